"""uvicorn's HTTP protocol, with each answer sent to the socket in one write.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two writes, so
two ``send`` system calls and two TCP segments for every answer, and two wake-ups of the
client. On loopback the kernel does the receiving side's work inside the sender's call,
so the second write cost ``serve`` nearly as much as the first (py-spy: uvicorn's writes
were 17 % of ``serve``'s CPU per ``PATCH``; docs/benchmarks.md, "The API path").

:class:`OneWriteHttp` is uvicorn's own httptools protocol (``uvicorn.Config(http=...)``
takes a protocol class) given a transport that holds what is written until the loop's
current turn ends, then writes it at once. An answer's start and body are sent in the same
turn (nothing awaits in between unless the socket is full), so they leave together. A
streamed answer whose parts come in later turns goes out part by part, as before; past
:data:`FLUSH_AT` bytes a write goes through at once, so a large body is never held back.

Only public interfaces are used: the protocol class that ``uvicorn.Config`` documents as
``http``, asyncio's ``connection_made``, and the transport's own methods.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024  # bytes held before a write goes through without waiting for the turn


class TurnBuffer:
    """A transport that sends its writes of one loop turn in one write of ``transport``.

    Anything else (reading, closing, flow control, ``get_extra_info``) is the transport's
    own; ``close`` sends what is held first, ``abort`` drops it as the transport would."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Send what is held, in one write (a no-op when nothing is)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`TurnBuffer`: one write per answer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        buffered = TurnBuffer(transport, asyncio.get_running_loop())
        super().connection_made(buffered)  # type: ignore[arg-type]
