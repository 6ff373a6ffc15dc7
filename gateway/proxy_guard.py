"""Runs inside Serve's HTTP proxy, so that a gateway replica dying mid-request is a 503, not a 500,
and a realtime WebSocket is not cut at the HTTP request timeout.

When the gateway replica holding a request dies before answering, Serve's proxy has nothing to
send (it only writes a body for 408/429/503) and the ASGI server then answers a bare
"500 Internal Server Error". This middleware answers instead, in the gateway's JSON error shape,
with Retry-After. Serve loads it from the environment of every node's proxy:

    export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=gateway.proxy_guard:middlewares

(set before `ray start` / `serve run`; scripts/run_local.sh and the tests do).
"""

from __future__ import annotations

import json

from starlette.middleware import Middleware

RETRY_AFTER_S = 1
BODY = json.dumps({"error": {"message": "the gateway replica serving this request went away before answering; "
                             "retry later", "type": "replica_unavailable", "code": "replica_unavailable"}}).encode()
IMPORT_PATH = "gateway.proxy_guard:middlewares"
TIMEOUT_HEADER = b"x-request-timeout-seconds"  # Serve's per-request timeout; 0 turns it off


class AnswerWhenGatewayDies:
    """Plain ASGI: if the proxied app returns without starting a response, send a 503."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            return await self.app(untimed(scope), receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def noting_start(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive, noting_start)
        if not started:
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(RETRY_AFTER_S).encode()),
                                    (b"content-length", str(len(BODY)).encode())]})
            await send({"type": "http.response.body", "body": BODY})


def untimed(scope: dict) -> dict:
    """A WebSocket (a /v1/realtime session) is not cut at http_options.request_timeout_s, which Serve's
    proxy would apply to the whole connection; the gateway's `realtime.max_session_s` bounds it."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != TIMEOUT_HEADER]
    return {**scope, "headers": [*headers, (TIMEOUT_HEADER, b"0")]}


def middlewares() -> list[Middleware]:
    """What Serve's proxy calls (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    return [Middleware(AnswerWhenGatewayDies)]
