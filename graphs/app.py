"""App builder: `serve run serve_config.yaml` validates `args:` into AppArgs and calls build_app.

Which models are served, their GPU fractions and their scaling all come from these typed args,
so moving from tiny CPU models to real weights on a GPU cluster is a YAML change. A task left out
of the YAML is simply not deployed; its routes answer 404 and flows that need it are off.
"""
# No `from __future__ import annotations`: Ray reads build_app's annotation to validate `args`.

import logging
import time
from pathlib import Path

import yaml
from pydantic import Field
from ray.serve import Application

from deployments import asr, image, llm, music, tts, vlm
from deployments.asr import AsrDeploymentArgs
from deployments.image import ImageDeploymentArgs
from deployments.llm import LlmDeploymentArgs
from deployments.music import MusicDeploymentArgs
from deployments.tts import TtsDeploymentArgs
from deployments.vlm import VlmDeploymentArgs
from graphs.gateway import Gateway, GatewayArgs
from mmserve.config import Strict
from mmserve.plan import ClusterArgs, check_app_args

log = logging.getLogger(__name__)

DEPLOYMENT_MODULES = {"asr": asr, "image": image, "llm": llm, "tts": tts, "vlm": vlm, "music": music}


class AppArgs(Strict):
    asr: AsrDeploymentArgs | None = None
    image: ImageDeploymentArgs | None = None
    llm: LlmDeploymentArgs | None = None
    tts: TtsDeploymentArgs | None = None
    vlm: VlmDeploymentArgs | None = None
    music: MusicDeploymentArgs | None = None
    gateway: GatewayArgs = Field(default_factory=GatewayArgs)
    cluster: ClusterArgs | None = Field(
        None, description="the GPUs this config is planned for; build_app checks memory and scheduling against "
        "them (None: no check)")

    def served(self) -> dict:
        return {task: getattr(self, task) for task in DEPLOYMENT_MODULES if getattr(self, task) is not None}


def build_app(args: AppArgs) -> Application:
    check_gpu_plan(args)
    models = {task: (task_args.served_name, DEPLOYMENT_MODULES[task].build(task_args),
                     task_args.deployment.always_on)
              for task, task_args in args.served().items()}
    return Gateway.options(**args.gateway.deployment.serve_options()).bind(args.gateway, models)


def check_gpu_plan(args: AppArgs) -> None:
    """The capacity planner's checks at `serve run`: a model that cannot fit its share, or a minimum
    replica set that cannot be scheduled, stops the build here instead of OOMing replicas later."""
    if args.cluster is None or not any(task.deployment.num_gpus > 0 for task in args.served().values()):
        return
    started = time.perf_counter()
    check_app_args(args, args.cluster, warn=lambda message: log.warning("GPU plan: %s", message))
    log.info("GPU plan checked in %.1f s", time.perf_counter() - started)


def load_app_args(config_path: str | Path, app_name: str = "mmserve") -> AppArgs:
    """The validated args of one application in a Serve config file (tests, scripts, benchmarks)."""
    config = yaml.safe_load(Path(config_path).read_text())
    for application in config["applications"]:
        if application["name"] == app_name:
            return AppArgs.model_validate(application["args"])
    raise KeyError(f"no application named {app_name!r} in {config_path}")
