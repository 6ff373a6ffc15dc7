"""App builder: `serve run serve_config.yaml` validates `args:` into AppArgs and calls build_app.

Each model entry becomes its task's deployment (`mmserve.tasks`), named after the model; the
gateway gets their handles and the flows to serve. A task with no model is simply not deployed;
its routes answer 404 and flows that need it are off.
"""
# No `from __future__ import annotations`: Ray reads build_app's annotation to validate `args`.

import logging
import time

from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from gateway.ingress import Gateway
from mmserve.catalog import ModelArgs
from mmserve.config.app import AppArgs
from mmserve.lazy import import_attr
from mmserve.plan import check_app_args

log = logging.getLogger(__name__)
SESSION_ROUTER = "deployments.routing:SessionAffinityRouter"


def deploy(model: ModelArgs) -> Application:
    """The one builder of every model deployment: its task's class, named after the model."""
    deployment = import_attr(model.family.declared_task.deployment)
    options = model.deployment.serve_options()
    if model.family.streams:  # a live turn's calls go to the replica that holds its stream
        options["request_router_config"] = RequestRouterConfig(request_router_class=SESSION_ROUTER)
    return deployment.options(name=model.name, **options).bind(model)


def build_app(args: AppArgs) -> Application:
    check_gpu_plan(args)
    models = model_specs(args, deploy)
    return Gateway.options(**args.gateway.deployment.serve_options()).bind(args.gateway, models, args.served_flows())


def model_specs(args: AppArgs, handle_of) -> list[dict]:
    """What the gateway knows of each model (`gateway.services.ServedModel`'s fields), as plain data;
    `handle_of(model)` gives its deployment handle (or bound deployment)."""
    defaults = {args.default_model(m.task).name for m in args.models}
    return [{"name": m.name, "task": m.task, "family": m.family.name, "handle": handle_of(m),
             "always_on": m.deployment.always_on, "default": m.name in defaults, "adapters": tuple(m.adapters),
             "stream_chunk_samples": m.runner.chunk_samples if m.family.streams else None}
            for m in args.models]


def check_gpu_plan(args: AppArgs) -> None:
    """The capacity planner's checks at `serve run`: a model that cannot fit its share, or a minimum
    replica set that cannot be scheduled, stops the build here instead of OOMing replicas later."""
    if args.cluster is None or not any(model.deployment.num_gpus > 0 for model in args.models):
        return
    started = time.perf_counter()
    check_app_args(args, args.cluster, warn=lambda message: log.warning("GPU plan: %s", message))
    log.info("GPU plan checked in %.1f s", time.perf_counter() - started)
