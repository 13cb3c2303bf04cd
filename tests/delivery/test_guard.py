"""The SSRF guard's resolver: a name is refused for the addresses it resolves to."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from loadbell.delivery.guard import ForbiddenTarget, GuardedResolver


class StaticResolver(AbstractResolver):
    """Answers every name with fixed addresses: no DNS server can be made to return these,
    and the guard must judge them without a connection being tried."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host=a, port=port, family=socket.AF_INET6, proto=0, flags=0
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "address",
    [
        "::169.254.169.254",  # IPv4-compatible metadata address
        "64:ff9b::a9fe:a9fe",  # NAT64 to the metadata address
        "2002:a9fe:a9fe::1",  # 6to4 through the metadata address
        "2001:0:808:808::f5ff:fffe",  # Teredo client 10.0.0.1
        "fec0::1",  # site-local
    ],
)
async def test_a_name_resolving_to_an_embedded_private_ipv4_is_refused(address: str) -> None:
    """A name whose only address carries a private IPv4 address fails with the way out."""
    resolver = GuardedResolver(StaticResolver(address))
    with pytest.raises(ForbiddenTarget) as exc:
        await resolver.resolve("hooks.example.com", 443, socket.AF_UNSPEC)
    assert f"target hooks.example.com resolves to {address}" in str(exc.value)
    assert "--allow-private-targets" in str(exc.value)


async def test_only_the_public_addresses_of_a_name_are_kept() -> None:
    """A name with private and public answers connects only to the public ones."""
    resolver = GuardedResolver(
        StaticResolver("64:ff9b::a9fe:a9fe", "64:ff9b::808:808", "::127.0.0.1", "2002:808:808::1")
    )
    kept = await resolver.resolve("hooks.example.com", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in kept] == ["64:ff9b::808:808", "2002:808:808::1"]
