"""Loopback only: the tool must never load a machine other than this one."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def check_loopback(url: str) -> str:
    """The URL without a trailing slash; ValueError unless its host is 127.0.0.0/8, ::1 or localhost.

    Host names other than localhost are refused without resolving them, so DNS cannot redirect load.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: only http(s) URLs are accepted")
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{url!r}: refusing a non-loopback host {host!r} (use 127.0.0.1, ::1 or localhost)")
    return url.rstrip("/")
