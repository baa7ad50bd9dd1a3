"""What a TLS proxy in front says about a request (X-Forwarded-For/-Proto/-Host), believed only
when the request comes from a proxy the config names: from anyone else it is a forgery."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web

Networks = Sequence[IPv4Network | IPv6Network]
_SCHEMES = ("http", "https")


def _trusted(address: str | None, proxies: Networks) -> bool:
    try:
        ip = ip_address((address or "").strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def _last(value: str | None) -> str:
    """The value the proxy nearest us added: the last of a comma-separated list."""
    return (value or "").rsplit(",", 1)[-1].strip()


def behind_proxy(request: web.Request, proxies: Networks) -> web.Request:
    """The request as the client made it, if a trusted proxy forwarded it; else as it is.

    The client is the rightmost X-Forwarded-For address that is not a trusted proxy: every
    address left of it was written by the client itself, and could say anything.
    """
    if not _trusted(request.remote, proxies):
        return request
    changes: dict[str, str] = {}
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, proxies):
            changes["remote"] = hop
            break
    scheme = _last(request.headers.get("X-Forwarded-Proto")).lower()
    if scheme in _SCHEMES:
        changes["scheme"] = scheme
    host = _last(request.headers.get("X-Forwarded-Host"))
    if host:
        changes["host"] = host
    return request.clone(**changes) if changes else request  # type: ignore[arg-type]
