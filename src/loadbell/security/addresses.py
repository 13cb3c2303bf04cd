"""Which addresses loadbell refuses to send to, and which URL hosts it accepts. No I/O.

Two layers apply this policy: the SSRF guard (``delivery/guard.py``) asks
:func:`is_forbidden` about every address a target resolves to and about IP literals before
connecting, and the channel kinds ask :func:`host_problem` about a URL's host when the URL
is saved. It lives below both, so neither reaches sideways or up for it.

An IPv6 address that carries an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo)
reaches that IPv4 host through a translator or a tunnel, so it is judged by the IPv4
address, never by the IPv6 ranges around it: ``64:ff9b::a9fe:a9fe`` is the cloud metadata
address 169.254.169.254 to a NAT64 gateway, though the IPv6 registry calls the prefix global.
"""

from __future__ import annotations

import ipaddress
import string
from ipaddress import IPv4Address, IPv6Address, IPv6Network

_IPV4_COMPATIBLE = IPv6Network("::/96")  # deprecated (RFC 4291 2.5.5.1); :: and ::1 excluded
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765); mapped is ::ffff:0:0/96
_NAT64 = IPv6Network("64:ff9b::/96")  # the well-known prefix, always /96 (RFC 6052)
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")  # local-use: /48 up to /96 (RFC 8215)
# Site-local was deprecated (RFC 3879), yet routers may still forward it inside a site;
# unique-local is a private network's own range. Python's is_global misses the former.
_LOCAL_RANGES = (IPv6Network("fec0::/10"), IPv6Network("fc00::/7"))

# RFC 6052 2.2: after a /48, /56 or /64 prefix the IPv4 address's bytes sit around the
# reserved "u" octet (byte 8 of the packed address), and a zero suffix follows them.
_RFC6052_FORMS = (
    (slice(6, 8), slice(9, 11), 11),  # /48
    (slice(7, 8), slice(9, 12), 12),  # /56
    (slice(8, 8), slice(9, 13), 13),  # /64: no byte before the u octet
)

MAX_NAME = 253  # characters of a DNS name, without its trailing dot (RFC 1035)
MAX_LABEL = 63
# Letters, digits and '-' are a host name's (RFC 1123); '_' is not, yet DNS carries it, and
# container and service names use it ("my_receiver" on a Docker network).
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_DIGITS = {10: frozenset(string.digits), 8: frozenset("01234567"), 16: frozenset(string.hexdigits)}
_WRITE = (
    "write the receiver's DNS name (letters, digits, '-' and '_' between dots), a dotted "
    "quad such as 192.0.2.10, or an IPv6 address in brackets such as [2001:db8::1]"
)


def is_forbidden(address: str) -> bool:
    """True for an address the guard refuses: private, loopback, link-local (169.254.169.254,
    the cloud metadata service), carrier-grade NAT, reserved, unspecified, multicast,
    site-local and unique-local, and an IPv6 address that carries any such IPv4 address.

    ``address`` is an IP address as text (an IPv6 zone id is ignored); anything else is
    not an address, and is not refused here.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return _forbidden(ip)


def _forbidden(ip: IPv4Address | IPv6Address) -> bool:
    if isinstance(ip, IPv6Address):
        carried = embedded_ipv4(ip)
        if carried:
            return any(_forbidden(v4) for v4 in carried)
        if any(ip in net for net in _LOCAL_RANGES):
            return True
    # not is_global covers private, loopback, link-local, CGNAT, reserved and unspecified.
    return not ip.is_global or ip.is_multicast


def embedded_ipv4(ip: IPv6Address) -> tuple[IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address reaches through a translator or tunnel; none for
    a plain IPv6 address. Teredo gives two: its server (bits 32-63) and its client (the
    last 32 bits, inverted)."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.teredo is not None:
        return ip.teredo
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    last = IPv4Address(ip.packed[12:])
    if ip in _NAT64 or ip in _IPV4_TRANSLATED:
        return (last,)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return (last,)
    if ip in _NAT64_LOCAL:
        return (last, *_shorter_nat64_forms(ip.packed))
    return ()


def _shorter_nat64_forms(packed: bytes) -> list[IPv4Address]:
    """The IPv4 address a translator with a /48, /56 or /64 local-use prefix would read, for
    each of those forms the address has (a zero u octet and a zero suffix). The prefix
    length is the operator's choice, so every form the address fits is judged."""
    if packed[8] != 0:
        return []
    return [
        IPv4Address(packed[high] + packed[low])
        for high, low, suffix in _RFC6052_FORMS
        if not any(packed[suffix:])
    ]


def literal_ip(host: str) -> str | None:
    """The IP address a URL host spells (brackets allowed), or None for a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def host_problem(host: str) -> str | None:
    """Why a URL's host is neither a canonical IP address nor a DNS name, or None.

    ``host`` is the host as the URL carries it (IDNA-encoded, IPv6 without its brackets).
    A host whose last label is a number is an IPv4 address to browsers and to getaddrinfo,
    which also read ``127.1``, ``2130706433`` and ``0x7f.0.0.1`` as 127.0.0.1; the sender
    refuses those forms, so only the dotted quad is accepted, and the message gives it.
    """
    if not host:
        return "has no host; " + _WRITE
    if ":" in host:
        try:
            IPv6Address(host)
        except ValueError:
            return f"has the host [{host}], which is not an IPv6 address; " + _WRITE
        return None
    labels = host.removesuffix(".").split(".")
    if _is_numeric(labels[-1]):
        return _ipv4_problem(host)
    reason = _name_problem(host.removesuffix("."), labels)
    if reason is None:
        return None
    return f"has the host {host!r}, which is not a DNS name ({reason}); " + _WRITE


def _ipv4_problem(host: str) -> str | None:
    value = _ipv4_number(host)
    if value is None:
        return f"has the host {host!r}, which is not an IPv4 address; " + _WRITE
    canonical = str(IPv4Address(value))
    if host == canonical:
        return None
    return (
        f"has the host {host!r}, a shorthand for the IPv4 address {canonical} that the "
        f"sender does not accept; write {canonical} instead"
    )


def _ipv4_number(host: str) -> int | None:
    """The address inet_aton (and a browser) reads from ``host``: up to four numbers in
    decimal, octal (leading 0) or hex (0x), the last filling the bytes that are left."""
    parts = host.removesuffix(".").split(".")
    numbers = [_number(part) for part in parts]
    if len(parts) > 4 or None in numbers:
        return None
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    return sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last


def _is_numeric(label: str) -> bool:
    """A label that makes a host an IPv4 address, valid or not (the URL Standard's rule)."""
    if label[:2].lower() == "0x":
        return set(label[2:]) <= _DIGITS[16]
    return bool(label) and set(label) <= _DIGITS[10]


def _number(part: str) -> int | None:
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not part or not set(digits) <= _DIGITS[base]:
        return None
    return int(digits, base) if digits else 0


def _name_problem(name: str, labels: list[str]) -> str | None:
    bad = next((c for c in name if c not in _NAME_CHARS and c != "."), None)
    if bad is not None:
        return f"{bad!r} cannot appear in one"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    for label in labels:
        if not label:
            return "it has an empty label: two dots in a row, or a dot at the start"
        if len(label) > MAX_LABEL:
            return f"a label is longer than {MAX_LABEL} characters"
        if label.startswith("-") or label.endswith("-"):
            return f"the label {label!r} starts or ends with '-'"
    return None
