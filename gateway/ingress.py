"""The HTTP face of mmserve: one FastAPI ingress deployment holding handles to the models.

Media is decoded and limits are checked here, once, so model replicas only see valid input.
Every route but /healthz, /readyz and the /playground page needs an API key when keys are configured.
"""
# No `from __future__ import annotations` here: FastAPI must resolve route parameter types.

import asyncio
import json
import logging
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve
from starlette.datastructures import Headers

from deployments import metrics
from gateway import admission, flow_routes, openai, playground, realtime
from gateway.auth import Unauthorized, authorized, configured_keys
from gateway.errors import error_response, install_error_handlers
from gateway.services import ServedModel, Services, install, services, waiting_for
from graphs.stages import Saturation, Stages
from mmserve.config import Strict
from mmserve.config.flows import FLOW_PREFIX, LEGACY_FLOW_PREFIX
from mmserve.config.gateway import GatewayArgs
from mmserve.errors import MMServeError, PayloadTooLarge

# A child of Serve's own "ray.serve" logger: inside a replica only that logger has handlers (the
# replica's log file under logs/serve/), and a child follows Serve's logging_config (level, JSON).
access_log = logging.getLogger("ray.serve.mmserve.access")
# Serve's marks for its own access lines: file only (not the worker's stderr), and off with enable_access_log.
ACCESS_LOG_EXTRA = {"log_to_stderr": False, "serve_access_log": True}
app = FastAPI(title="mmserve", version="0.1.0")
install_error_handlers(app)
for router in openai.ROUTERS:
    app.include_router(router)
app.include_router(flow_routes.router, prefix=FLOW_PREFIX)
app.include_router(flow_routes.router, prefix=LEGACY_FLOW_PREFIX, include_in_schema=False, deprecated=True)
app.include_router(realtime.router)
app.include_router(playground.router)
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The playground page and its assets load without a key; the API calls the page makes carry one.
OPEN_PATHS = {"/healthz", "/readyz", *playground.PAGE_PATHS}


class GuardAndLog:
    """Auth, the body-size limit from Content-Length alone, and one JSON log line per request.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware`) runs every
    request through an extra task group and body queue, measurably slower per request on small
    CPUs. Serve itself takes `x-request-id` from the request (or makes one) and echoes it back.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = Headers(scope=scope)
        status = 500  # what an exception escaping the app becomes (Starlette's outer handler)

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            rejection = self._rejection(scope, headers)
            if rejection is not None:
                await error_response(rejection)(scope, receive, send_noting_status)
            else:
                await self.app(scope, receive, send_noting_status)
        finally:
            if reason := metrics.reason_for(status):
                metrics.rejected_requests().inc(tags={"reason": reason})
            access_log.info(json.dumps({
                "request_id": headers.get("x-request-id") or _serve_request_id(), "method": scope["method"],
                "path": scope["path"], "status": status, "duration_ms": round((time.perf_counter() - start) * 1000, 2),
            }), extra=ACCESS_LOG_EXTRA)

    @staticmethod
    def _rejection(scope, headers: Headers) -> MMServeError | None:
        svc = services()
        keys, limit = svc.api_keys, svc.max_body_bytes
        declared = headers.get("content-length")
        path = scope["path"].removeprefix(scope.get("root_path", ""))  # under any route_prefix
        if keys and path not in OPEN_PATHS and not authorized(headers.get("authorization"), keys):
            return Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")
        if limit and declared and declared.isdigit() and int(declared) > limit:
            return PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        return admission.refusal(path, svc.models, svc.stages.saturation)


app.add_middleware(GuardAndLog)


def _serve_request_id() -> str | None:
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:
        return None


@app.get("/healthz")
async def healthz() -> dict:
    """Liveness: the gateway answers. Says nothing about the models (see /readyz)."""
    return {"status": "ok"}


@app.get("/readyz")
async def readyz() -> JSONResponse:
    """Readiness for load balancers and scripts: 200 once every always-on model has a running
    (loaded and warmed-up) replica, else 503 naming the ones still starting. Read from Serve's
    controller, not by calling the models, so a busy model is not mistaken for a missing one and
    a model that scales to zero is not woken by the probe."""
    svc = services()
    try:
        running = await asyncio.to_thread(running_replicas)
    except Exception as exc:  # controller unreachable: not ready, and say why
        return JSONResponse({"status": "unknown", "error": f"{type(exc).__name__}: {exc}"[:300]}, status_code=503)
    waiting = waiting_for(svc.models, running)
    body = {"status": "starting" if waiting else "ready", "waiting_for": waiting,
            "running_replicas": {name: running.get(name, 0) for name in svc.models}}
    return JSONResponse(body, status_code=503 if waiting else 200)


def running_replicas() -> dict[str, int]:
    """RUNNING replicas per deployment of this gateway's application (Serve's controller status); a
    model's deployment is named after the model."""
    app_name = serve.get_replica_context().app_name
    deployments = serve.status().applications[app_name].deployments
    return {name: status.replica_states.get("RUNNING", 0) for name, status in deployments.items()}


@serve.deployment(name="gateway")
@serve.ingress(app)
class Gateway:
    def __init__(self, args: GatewayArgs, models: list[dict], flows: dict[str, Strict]):
        """`models`: one dict per model (name, task, family, handle, always_on, default, adapters), plain data
        so this replica needs no runner module; `flows`: the flows to serve, each stage's model resolved."""
        served = {spec["name"]: ServedModel(**spec) for spec in models}
        calls = Stages(args.stage_deadlines_s.model_dump(exclude_none=True), Saturation(args.saturated_hold_s))
        install(Services(limits=args.limits, image_defaults=args.image_defaults, models=served, flows=flows,
                         api_keys=configured_keys(args), realtime=args.realtime, stages=calls,
                         max_body_bytes=args.limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES))
