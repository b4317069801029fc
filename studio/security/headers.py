"""Headers the guard reads and writes: which Host names the server answers, and what every answer carries.

Owns: `HostCheck` (a request's Host must be a loopback name, the bound host, the share link's host, a
`STUDIO_ALLOWED_HOSTS` or `STUDIO_ALLOWED_ORIGINS` name, or, on a server bound to every interface, an IP
address or this machine's name: a DNS-rebinding page always sends its own domain name), the anti-framing
headers and `SameSite=Lax` cookies added to every answer (`with_safe_headers`), and emptying the API
description Gradio embeds in its login page (`without_api_info`).
Ignores: who the user is and what they may reach (`guard.py`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})

# Not framed by another site (clickjacking); the page's own scripts and styles are Gradio's business.
_SAFE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]
_SAMESITE_NONE = re.compile(rb";\s*samesite=none", re.I)


@dataclass
class HostCheck:
    """The Host names this server answers to (lower case, no port); '*.example.com' allows subdomains."""

    names: set[str] = field(default_factory=set)
    any_address: bool = False  # bound to every interface: IP literals are reached directly, never rebound

    @classmethod
    def for_server(cls, bound: str, allowed: frozenset[str], origins: frozenset[str]) -> HostCheck:
        names = set(LOOPBACK_NAMES) | set(allowed)
        names |= {(urlsplit(f"//{o}").hostname or "").lower() for o in origins} - {""}
        wildcard = bound in WILDCARDS
        if wildcard:
            host = socket.gethostname().lower()
            names |= {host, socket.getfqdn().lower(), f"{host}.local"}
        else:
            names.add(bound.lower().strip("[]"))
        return cls(names, any_address=wildcard)

    def add_url(self, url: str | None) -> None:
        """Answer the host of this URL too (the share link, known once Gradio made it)."""
        host = urlsplit(url or "").hostname
        if host:
            self.names.add(host.lower())

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        try:
            parts = urlsplit(f"//{header}")
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return False
        if not host or "@" in parts.netloc:
            return False
        if host in self.names or any(n.startswith("*.") and host.endswith(n[1:]) for n in self.names):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or self.any_address


def with_safe_headers(send: Any) -> Any:
    """Wrap `send`: every answer refuses framing, and Gradio's SameSite=None login cookie becomes Lax."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, _SAMESITE_NONE.sub(b"; samesite=lax", v) if k.lower() == b"set-cookie" else v)
                for k, v in message.get("headers", [])
                if k.lower() not in {h for h, _ in _SAFE_HEADERS}
            ]
            message = {**message, "headers": headers + _SAFE_HEADERS}
        await send(message)

    return wrapped


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)
_NO_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'


def without_api_info(send: Any) -> Any:
    """Wrap `send` so the page's embedded API description (endpoint names, parameters) is emptied."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = _API_INFO.sub(lambda _: _NO_API_INFO, b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped
