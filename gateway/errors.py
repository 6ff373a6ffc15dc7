"""HTTP error shape for the gateway: OpenAI's `{"error": {...}}` with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from graphs.stages import replica_lost, unwrap
from mmserve.errors import MMServeError, Overloaded, ReplicaUnavailable

log = logging.getLogger("ray.serve")


def error_response(exc: MMServeError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MMServeError)
    async def _mmserve(_: Request, exc: MMServeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(exc)
        body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_request_error",
                          "param": field}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": {"message": str(exc.detail), "type": "http_error", "code": exc.status_code}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        cause = unwrap(exc)
        if isinstance(cause, MMServeError):
            return error_response(cause)
        if isinstance(cause, BackPressureError):
            return error_response(Overloaded())
        if replica_lost(exc):  # a model call made outside Stages.run: still the server's trouble, not a 500
            return error_response(ReplicaUnavailable("a replica went away before answering, retry later"))
        log.exception("unhandled error in gateway")
        return JSONResponse({"error": {"message": f"internal error: {type(cause).__name__}",
                                       "type": "internal_error", "code": "internal_error"}}, status_code=500)
