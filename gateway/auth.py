"""API keys: which keys are configured, and whether a request presents one (Bearer, constant time)."""

from __future__ import annotations

import hmac
import os

from mmserve.config.gateway import GatewayArgs
from mmserve.errors import MMServeError


class Unauthorized(MMServeError):
    status_code = 401
    code = "invalid_api_key"


def authorized(header: str | None, keys: list[str]) -> bool:
    """`Authorization: Bearer <key>` with one of the configured keys (compared in constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header.removeprefix("Bearer ").strip().encode()
    return any(hmac.compare_digest(given, key.encode()) for key in keys)


def configured_keys(args: GatewayArgs) -> list[str]:
    """The config's `api_keys` and those in MMSERVE_API_KEYS (comma-separated)."""
    from_env = [k.strip() for k in os.environ.get("MMSERVE_API_KEYS", "").split(",") if k.strip()]
    return [*args.api_keys, *from_env]
