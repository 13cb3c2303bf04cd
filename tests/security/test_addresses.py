"""The address policy: which addresses the SSRF guard refuses, which URL hosts are accepted."""

from __future__ import annotations

import pytest

from loadbell.security.addresses import host_problem, is_forbidden

# Every public example must be allowed and every private one refused; the IPv6 forms that
# carry an IPv4 address are judged by that address, whatever the IPv6 registry says.
ADDRESSES = [
    # plain IPv4
    ("8.8.8.8", False),  # public
    ("169.254.169.254", True),  # link-local: the cloud metadata service
    ("127.0.0.1", True),  # loopback
    # IPv4-mapped ::ffff:0:0/96
    ("::ffff:8.8.8.8", False),  # public
    ("::ffff:169.254.169.254", True),  # metadata
    # IPv4-compatible ::/96 (deprecated, still routed by some stacks)
    ("::8.8.8.8", False),  # public
    ("::169.254.169.254", True),  # metadata
    ("::127.0.0.1", True),  # loopback
    ("::", True),  # unspecified, not an IPv4-compatible 0.0.0.0
    ("::1", True),  # loopback, not an IPv4-compatible 0.0.0.1
    # SIIT IPv4-translated ::ffff:0:0:0/96
    ("::ffff:0:808:808", False),  # public 8.8.8.8
    ("::ffff:0:a9fe:a9fe", True),  # metadata
    # NAT64 well-known prefix 64:ff9b::/96
    ("64:ff9b::808:808", False),  # public 8.8.8.8
    ("64:ff9b::a9fe:a9fe", True),  # metadata
    ("64:ff9b::10.0.0.1", True),  # private
    # NAT64 local-use prefix 64:ff9b:1::/48, with a /96 translator prefix
    ("64:ff9b:1::808:808", False),  # public 8.8.8.8
    ("64:ff9b:1::a9fe:a9fe", True),  # metadata
    # the same prefix with a /64 translator prefix: the IPv4 sits in bits 72-103
    ("64:ff9b:1:0:8:808:800:0", False),  # public 8.8.8.8 (read as /96: 8.0.0.0, public)
    ("64:ff9b:1:0:a:0:100:0", True),  # private 10.0.0.1 (read as /96: 1.0.0.0, public)
    # 6to4 2002::/16: the IPv4 is bits 16-47
    ("2002:808:808::1", False),  # public 8.8.8.8
    ("2002:a9fe:a9fe::1", True),  # metadata
    ("2002:c0a8:1::1", True),  # private 192.168.0.1
    # Teredo 2001::/32: server in bits 32-63, client is the last 32 bits inverted
    ("2001:0:808:808::f7f7:f7f7", False),  # server and client both 8.8.8.8
    ("2001:0:808:808::f5ff:fffe", True),  # client 10.0.0.1 behind a public server
    ("2001:0:a9fe:a9fe::f7f7:f7f7", True),  # server 169.254.169.254, public client
    # IPv6 ranges a private network uses
    ("fec0::1", True),  # site-local (deprecated, still forwarded inside a site)
    ("fd12:3456:789a::1", True),  # unique-local fd00::/8
    ("fc00::1", True),  # unique-local fc00::/8
    ("fe80::1%eth0", True),  # link-local, with a zone id
    ("ff02::1", True),  # multicast
    ("2606:4700:4700::1111", False),  # public IPv6
    # not an address: names are judged once resolved
    ("example.com", False),
]


@pytest.mark.parametrize(("address", "forbidden"), ADDRESSES)
def test_the_guard_judges_embedded_ipv4_by_that_address(address: str, forbidden: bool) -> None:
    """An address is refused exactly when it, or an IPv4 address it carries, is not public."""
    assert is_forbidden(address) is forbidden


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("127.1", "write 127.0.0.1 instead"),  # two-part shorthand
        ("2130706433", "write 127.0.0.1 instead"),  # one 32-bit decimal number
        ("0x7f.0.0.1", "write 127.0.0.1 instead"),  # hex part
        ("017700000001", "write 127.0.0.1 instead"),  # one octal number
        ("010.0.0.1", "write 8.0.0.1 instead"),  # a leading 0 is octal to getaddrinfo
        ("1.2.3.4.", "write 1.2.3.4 instead"),  # trailing dot
        ("256.1.1.1", "not an IPv4 address"),  # a part over 255
        ("1.2.3.08", "not an IPv4 address"),  # 8 is no octal digit
        ("1.2.3.4.5", "not an IPv4 address"),  # five parts
        ("hooks.123", "not an IPv4 address"),  # a numeric last label makes it an IPv4
        ("hooks example.com", "' ' cannot appear"),  # a space
        ("hooks%2eexample.com", "'%' cannot appear"),  # percent-encoding
        ("*.example.com", "'*' cannot appear"),  # a wildcard
        ("hooks..example.com", "empty label"),  # two dots
        ("-hooks.example.com", "starts or ends with '-'"),
        ("a" * 64 + ".example.com", "longer than 63"),
        (".".join(["a" * 63] * 4) + ".com", "longer than 253"),
        ("", "has no host"),
        ("::ffff:127.1", "not an IPv6 address"),  # an IPv4 shorthand inside IPv6
    ],
)
def test_hosts_that_are_no_address_or_name_are_refused(host: str, says: str) -> None:
    """A host that is neither a canonical address nor a DNS name gets a reason and a fix."""
    problem = host_problem(host)
    assert problem is not None and says in problem, problem
    assert "write" in problem


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # canonical dotted quad
        "0.0.0.0",  # canonical, though the guard refuses it
        "::1",  # IPv6 (the URL had it in brackets)
        "fe80::1%25eth0",  # IPv6 with a zone id, as the URL carries it
        "localhost",  # single label
        "receiver",  # single label: a container on the same network
        "my_receiver",  # '_' is common in container names
        "hooks.example.com",  # DNS name
        "hooks.example.com.",  # fully qualified, trailing dot
        "xn--exmple-cua.com",  # an internationalized name, IDNA-encoded by the URL
        "1password.com",  # a leading digit in a name
        "0x.example.com",  # looks hex, but the last label is a name
    ],
)
def test_canonical_addresses_and_dns_names_are_accepted(host: str) -> None:
    """Dotted quads, IPv6 literals and DNS names, single labels included, are fine."""
    assert host_problem(host) is None
