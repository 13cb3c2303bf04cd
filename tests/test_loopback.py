"""The test jail of tests/loopback.py keeps generated targets on the machine."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from loadbell.testing import RecordingReceiver
from loopback import loopback_only


async def test_names_and_addresses_off_loopback_are_refused_and_loopback_works() -> None:
    """Inside the jail a public name does not resolve, a public address refuses to connect,
    and a receiver on 127.0.0.1 still answers; outside it, resolution is the real one again."""
    async with RecordingReceiver() as rx:
        with loopback_only() as refused:
            with pytest.raises(socket.gaierror):
                await asyncio.get_running_loop().getaddrinfo("hooks.example.com", 443)
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientConnectorError):
                    await http.post("http://192.0.2.1:9/hook", data=b"x")
                async with http.post(f"{rx.url}/hook", data=b"x") as resp:
                    assert resp.status < 500
            assert refused == ["resolve 'hooks.example.com'", "connect ('192.0.2.1', 9)"]
        assert socket.getaddrinfo.__module__ == "socket"
