"""Whether a URL or a host is this machine: a loopback address or the name `localhost`.

Deciding it needs no network: nothing is resolved, so any other name counts as remote. Both
the refusal to send private data off the machine (penumbra.models.remote) and the OpenAI
client (which keeps a loopback server's traffic away from proxies) ask here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses, however spelled; every other name is
    remote (nothing is resolved)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("localhost", "localhost."):
        return True
    host = host.split("%", 1)[0]  # an IPv6 zone id names an interface, not a host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a DNS name (or an odd spelling of an address): remote, never resolved
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1
    return address.is_loopback


def is_loopback_url(url: str) -> bool:
    """True when an http(s) URL's host is this machine's loopback: 127.0.0.0/8, ::1 or
    `localhost`. Resolves nothing: every other host name is remote. The host must read the
    same to urllib and to httpx (which sends the requests), so a URL that parsers disagree on
    (userinfo tricks, backslashes) is treated as remote."""
    try:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return False
        sent_to = httpx.URL(url.strip()).host
    except (ValueError, httpx.InvalidURL):  # not provably local
        return False
    return is_loopback_host(parts.hostname) and is_loopback_host(sent_to)
