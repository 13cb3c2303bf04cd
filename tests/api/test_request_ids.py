"""Request ids (api/request_ids.py): a client's plain id is kept, otherwise a new random one
is made, spelled as ``uuid.uuid4().hex`` spells a UUID."""

from __future__ import annotations

import uuid

from loadbell.api.request_ids import new_ident, request_ident


def test_new_ids_are_random_version_4_uuids_in_hex() -> None:
    """Each new id reads back as a version 4 UUID of the RFC 4122 variant, in the same
    32 lowercase hex digits, and no two are alike."""
    made = [new_ident() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for ident in made:
        parsed = uuid.UUID(ident)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122), ident
        assert parsed.hex == ident
    # Every other bit varies: over 2,000 ids each of the 122 random bits was 0 and 1.
    ones = [0] * 128
    for ident in made:
        bits = int(ident, 16)
        for i in range(128):
            ones[i] += bits >> i & 1
    fixed = {i for i in range(128) if ones[i] in (0, len(made))}
    assert fixed == {76, 77, 78, 79, 62, 63}  # the version's four bits, the variant's two


def test_a_plain_client_id_is_kept_and_any_other_replaced() -> None:
    """A token of letters, digits, '.', '_' and '-' up to 64 long is the request's id;
    anything else (or nothing) gets a new one."""
    assert request_ident(b"edge-413") == "edge-413"
    assert request_ident(b"a" * 64) == "a" * 64
    for given in (b"", b"a" * 65, b"has space", b"semi;colon", "\u00e9".encode()):
        made = request_ident(given)
        assert uuid.UUID(made).version == 4, given
