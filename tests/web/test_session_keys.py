"""Sign-in sessions across a secret key rotation."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response

from loadbell.settings import Settings
from loadbell.web.session import Session, Sessions


def _cookie(sessions: Sessions) -> str:
    response = Response()
    sessions.store(response, Session.anonymous().signed_in(7, token_id=None, password="fp"))
    return response.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def test_sessions_last_while_the_old_key_is_listed(tmp_path: Path) -> None:
    """A session signed with the old key holds under "new,old" and ends once only the new
    key is left; one signed under "new,old" holds under "new" alone."""
    old = _cookie(Sessions(Settings(secret_key="old")))
    rotating = Sessions(Settings(secret_key="new, old"))
    loaded = rotating.load(old)
    assert loaded is not None and loaded.user_id == 7
    assert Sessions(Settings(secret_key="new")).load(old) is None
    fresh = _cookie(rotating)
    assert Sessions(Settings(secret_key="new")).load(fresh) is not None
    assert Sessions(Settings(secret_key="old")).load(fresh) is None


def test_session_keys_from_a_key_file(tmp_path: Path) -> None:
    """In key file mode the file's keys (one per line, newest first) sign sessions, like
    the same keys in LOADBELL_SECRET_KEY."""
    path = tmp_path / "loadbell.key"
    path.write_text("new\nold\n")
    from_file = Sessions(Settings(secret_key=None, secret_key_file=path))
    assert from_file.load(_cookie(Sessions(Settings(secret_key="old")))) is not None
    assert Sessions(Settings(secret_key="new")).load(_cookie(from_file)) is not None
