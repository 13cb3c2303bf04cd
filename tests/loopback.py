"""A jail for tests whose generated input names arbitrary targets: only 127.0.0.1, ::1 and
``localhost`` can be resolved or connected to from this process.

The contract test lets schemathesis invent channel URLs, SMTP hosts and Slack calls; the
server it drives runs in the test's own process, so patching name resolution and
``socket.connect`` keeps every one of those attempts on the machine (the attempt fails as a
refused connection, as it would behind a firewall). It polices what goes through Python's
``socket`` module, which is everything loadbell's outbound paths use on the default asyncio
loop (aiohttp's threaded resolver, asyncio's connect, aiosmtplib, Apprise's requests); a loop
that connects in C (uvloop) would bypass it, so ``loopback_only`` refuses to start there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Within the block, resolving or connecting to anything but loopback fails at once.

    Yields the list of refused targets, so a test can show the jail was exercised."""
    loop = asyncio.get_running_loop()
    if type(loop).__module__.startswith("uvloop"):
        raise RuntimeError("loopback_only cannot police uvloop, which connects in C")
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            refused.append(f"resolve {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, "refused by the test's loopback jail")
        return real_getaddrinfo(host, *args, **kwargs)

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # Unix sockets stay on the machine
        return _is_loopback(address[0])

    def connect(sock: socket.socket, address: Any) -> None:
        if not allowed(sock, address):
            refused.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"refused by the test's loopback jail: {address!r}")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(sock, address):
            refused.append(f"connect {address!r}")
            return 111  # ECONNREFUSED
        return real_connect_ex(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield refused
