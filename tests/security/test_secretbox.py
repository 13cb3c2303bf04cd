"""Secrets at rest: several keys, newest first; re-sealing; no key file made by reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadbell.security.key_file import resolve, write_new
from loadbell.security.secretbox import SecretBox, SecretKeyError, parse_keys


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("one", ["one"]),  # a single key, as before
        ("new, old", ["new", "old"]),  # comma-separated, newest first, spaces dropped
        ("new,,old,", ["new", "old"]),  # empty entries dropped
        ("new\nold\n", ["new", "old"]),  # a key file: one key per line
        (" , ", []),  # nothing but separators: no key
    ],
)
def test_parse_keys(text: str, keys: list[str]) -> None:
    """Keys are split on commas and lines, stripped, blanks dropped, order kept."""
    assert parse_keys(text) == keys


def test_seals_with_the_newest_key_and_opens_with_any() -> None:
    """A box of "new,old" opens what either key sealed, and what it seals opens with the
    new key alone and not with the old one."""
    old_token = SecretBox("old").seal({"url": "http://a"})
    both = SecretBox("new,old")
    assert both.open(old_token) == {"url": "http://a"}
    sealed = both.seal({"url": "http://b"})
    assert sealed is not None
    assert SecretBox("new").open(sealed) == {"url": "http://b"}
    with pytest.raises(SecretKeyError):
        SecretBox("old").open(sealed)


def test_reseal_moves_a_value_to_the_newest_key_once() -> None:
    """reseal gives a token the new key alone opens, None for a token already under the
    newest key, and refuses a token no key opens."""
    old_token = SecretBox("old").seal({"token": "xoxb-1"})
    assert old_token is not None
    both = SecretBox(["new", "old"])
    moved = both.reseal(old_token)
    assert moved is not None and SecretBox("new").open(moved) == {"token": "xoxb-1"}
    assert both.reseal(moved) is None
    stranger = SecretBox("stranger").seal({"token": "x"})
    assert stranger is not None
    with pytest.raises(SecretKeyError):
        both.reseal(stranger)


def test_reading_the_key_never_writes_a_key_file(tmp_path: Path) -> None:
    """With no LOADBELL_SECRET_KEY and no key file, from_settings refuses and resolve makes
    a key in memory only; write_new then creates the file with mode 0600, once."""
    path = tmp_path / "sub" / "loadbell.key"
    with pytest.raises(SecretKeyError, match="does not exist"):
        SecretBox.from_settings(None, path)
    source = resolve(None, path)
    assert source.generated and not path.exists()
    assert write_new(path, source.keys[0])
    assert path.stat().st_mode & 0o777 == 0o600
    assert not write_new(path, "another")  # never overwritten
    assert resolve(None, path).keys == source.keys and not resolve(None, path).generated
    assert resolve("a,b", path).keys == ["a", "b"]
