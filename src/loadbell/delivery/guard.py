"""The SSRF guard: refuse targets that resolve to private, loopback or link-local addresses.

The check runs on the *resolved* address, inside the connector, so a DNS name that points
at 169.254.169.254 (cloud metadata) or 127.0.0.1 is refused at connect time, not only when
the URL is saved. Literal IP hosts never reach a resolver, so the sender checks them up
front. What counts as forbidden is decided in ``security/addresses.py``, the module whose
host rule the channel kinds apply to a URL when it is saved.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from loadbell.security.addresses import is_forbidden

HINT = (
    "loadbell refuses private, loopback and link-local targets by default; start it with "
    "--allow-private-targets (env LOADBELL_ALLOW_PRIVATE_TARGETS=1) to allow them"
)


class ForbiddenTarget(OSError):
    """Raised (inside the connector) for a target the guard refuses."""


def refuse_message(host: str, address: str) -> str:
    return f"target {host} resolves to {address}, a non-public address; {HINT}"


class GuardedResolver(AbstractResolver):
    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        allowed = [i for i in infos if not is_forbidden(i["host"])]
        if not allowed:
            raise ForbiddenTarget(refuse_message(host, infos[0]["host"] if infos else "?"))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def find_forbidden(exc: BaseException) -> ForbiddenTarget | None:
    """Dig a ForbiddenTarget out of aiohttp's wrapping exceptions."""
    seen: set[int] = set()
    cur: Any = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ForbiddenTarget):
            return cur
        os_error = getattr(cur, "os_error", None)
        if isinstance(os_error, ForbiddenTarget):
            return os_error
        cur = cur.__cause__ or cur.__context__
    return None
