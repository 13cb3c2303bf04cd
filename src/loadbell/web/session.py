"""Browser sessions: a signed cookie, its CSRF token, and the principal behind it.

The cookie (``loadbell_session``) holds no secret of its own: the user id, the API token
id when the person signed in with a token, a fingerprint of the password hash, and the
CSRF token that every form repeats. It is signed (itsdangerous, HMAC-SHA1 over a key
derived from the server's secret key) and expires after ``MAX_AGE``. It is sent with
HttpOnly and SameSite=Lax, and with Secure when ``LOADBELL_PUBLIC_URL`` is https.

The principal is loaded again on every request, so a revoked token, a changed password
or a changed role takes effect at once: nothing about rights is trusted from the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from loadbell.api.state import AppState
from loadbell.domain.roles import Role
from loadbell.security.passwords import fingerprint
from loadbell.security.secretbox import parse_keys
from loadbell.services.access import Principal
from loadbell.settings import Settings
from loadbell.store.tables import api_tokens, memberships, users

COOKIE = "loadbell_session"
FLASH_COOKIE = "loadbell_flash"
INFO, PROBLEM = "info", "problem"  # the kinds of flash message: news, or a refusal
# A secret shown once (a new token, an initial password, a signing secret), carried
# encrypted from the POST that made it to the page its redirect lands on (post/redirect/get).
ONCE_COOKIE = "loadbell_once"
ONCE_MAX_AGE = 60
MAX_AGE = 14 * 24 * 3600  # seconds a session lasts without signing in again
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    csrf: str
    user_id: int | None = None
    token_id: int | None = None  # set when the person signed in with an API token
    password: str | None = None  # fingerprint of the password hash at sign-in

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    def signed_in(self, user_id: int, *, token_id: int | None, password: str | None) -> Session:
        # A fresh CSRF token at sign-in: one seen before signing in is worth nothing after.
        return replace(Session.anonymous(), user_id=user_id, token_id=token_id, password=password)

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, str(submitted))


def signing_keys(settings: Settings) -> list[str]:
    """Keys for cookies, oldest first (itsdangerous signs with the last and accepts any),
    each derived from (never equal to) a key of secrets at rest.

    During a key rotation (``LOADBELL_SECRET_KEY=new,old``) sessions signed with the old key
    stay valid; new cookies are signed with the new key. Once the old key is dropped from
    the list, people still signed in with it sign in again.
    """
    material = settings.secret_key
    if not material or not parse_keys(material):
        material = settings.secret_key_file.read_text()
    return [
        hashlib.sha256(b"loadbell web session\0" + key.encode()).hexdigest()
        for key in reversed(parse_keys(material))
    ]


def _fernet(material: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


class Sessions:
    """Reads and writes the session and flash cookies."""

    def __init__(self, settings: Settings) -> None:
        keys = signing_keys(settings)
        self._session = URLSafeTimedSerializer(keys, salt="loadbell.web.session")
        self._flash = URLSafeTimedSerializer(keys, salt="loadbell.web.flash")
        # Encrypted, not only signed: the cookie holds a secret. Newest key first.
        self._once = MultiFernet([_fernet("loadbell web once\0" + k) for k in reversed(keys)])
        self.secure = settings.base_url.lower().startswith("https://")

    def load(self, raw: str | None) -> Session | None:
        if not raw:
            return None
        try:
            data: Any = self._session.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(
            csrf=data["c"],
            user_id=_int(data.get("u")),
            token_id=_int(data.get("t")),
            password=data.get("p") if isinstance(data.get("p"), str) else None,
        )

    def store(self, response: Response, session: Session) -> None:
        data = {"c": session.csrf, "u": session.user_id, "t": session.token_id}
        if session.password is not None:
            data["p"] = session.password
        response.set_cookie(
            COOKIE,
            self._session.dumps(data),
            max_age=MAX_AGE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def flash(self, response: Response, messages: list[tuple[str, str]]) -> None:
        """Every message for the page a redirect lands on, each with its kind."""
        response.set_cookie(
            FLASH_COOKIE,
            self._flash.dumps([list(m) for m in messages]),
            max_age=60,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear_flash(self, response: Response) -> None:
        response.delete_cookie(FLASH_COOKIE, path="/", secure=self.secure, samesite="lax")

    def once(self, response: Response, kind: str, values: dict[str, str]) -> None:
        sealed = self._once.encrypt(orjson.dumps({"kind": kind, **values})).decode()
        response.set_cookie(
            ONCE_COOKIE,
            sealed,
            max_age=ONCE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear_once(self, response: Response) -> None:
        response.delete_cookie(ONCE_COOKIE, path="/", secure=self.secure, samesite="lax")

    def read_once(self, raw: str | None) -> dict[str, str] | None:
        if not raw:
            return None
        try:
            data: Any = orjson.loads(self._once.decrypt(raw.encode(), ttl=ONCE_MAX_AGE))
        except (InvalidToken, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): str(v) for k, v in data.items()}

    def read_flash(self, raw: str | None) -> list[tuple[str, str]]:
        """The (kind, message) pairs ``flash`` left; nothing for a bad or old cookie."""
        if not raw:
            return []
        try:
            data: Any = self._flash.loads(raw, max_age=60)
        except BadSignature:
            return []
        if isinstance(data, str):  # a cookie of the version before kinds: news
            return [(INFO, data)]
        if not isinstance(data, list):
            return []
        return [
            (str(m[0]), str(m[1]))
            for m in data
            if isinstance(m, list) and len(m) == 2 and m[0] in (INFO, PROBLEM)
        ]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def principal_of(state: AppState, session: Session) -> Principal | None:
    """The person behind ``session`` as the API sees a caller, or None when the session no
    longer stands (user gone, token revoked, password changed since sign-in)."""
    if session.user_id is None:
        return None
    async with state.reader.connect() as conn:
        user = (
            await conn.execute(
                sa.select(users.c.name, users.c.password_hash).where(users.c.id == session.user_id)
            )
        ).first()
        if user is None:
            await conn.rollback()
            return None
        scoped: int | None = None
        if session.token_id is not None:
            token = (
                await conn.execute(
                    sa.select(api_tokens.c.user_id, api_tokens.c.organization_id)
                    .where(api_tokens.c.id == session.token_id)
                    .where(api_tokens.c.revoked_at.is_(None))
                )
            ).first()
            if token is None or token.user_id != session.user_id:
                await conn.rollback()
                return None
            scoped = token.organization_id
        elif user.password_hash is None or session.password != fingerprint(user.password_hash):
            await conn.rollback()
            return None
        q = sa.select(memberships.c.organization_id, memberships.c.role).where(
            memberships.c.user_id == session.user_id
        )
        if scoped is not None:
            q = q.where(memberships.c.organization_id == scoped)
        roles = {r.organization_id: Role(r.role) for r in await conn.execute(q)}
        await conn.rollback()
    return Principal(session.user_id, user.name, session.token_id or 0, scoped, roles)
