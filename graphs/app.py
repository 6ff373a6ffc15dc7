"""App builder: `serve run serve_config.yaml` validates `args:` into AppArgs and calls build_app.

Which models, their GPU fractions and their scaling all come from these typed args, so moving
from tiny CPU models to real weights on a GPU cluster is a YAML change.
"""

# No `from __future__ import annotations`: Ray reads build_app's annotation to validate `args`.
from pathlib import Path

import yaml
from pydantic import Field
from ray.serve import Application

from deployments import asr, image, llm
from graphs.gateway import Gateway, GatewayArgs
from mmserve.config import Strict


class AppArgs(Strict):
    asr: asr.AsrDeploymentArgs
    image: image.ImageDeploymentArgs
    llm: llm.LlmDeploymentArgs
    gateway: GatewayArgs = Field(default_factory=GatewayArgs)


def build_app(args: AppArgs) -> Application:
    return Gateway.options(**args.gateway.deployment.serve_options()).bind(
        args.gateway,
        asr=asr.build(args.asr),
        llm=llm.build(args.llm),
        image=image.build(args.image),
    )


def load_app_args(config_path: str | Path, app_name: str = "mmserve") -> AppArgs:
    """The validated args of one application in a Serve config file (tests, scripts, benchmarks)."""
    config = yaml.safe_load(Path(config_path).read_text())
    for application in config["applications"]:
        if application["name"] == app_name:
            return AppArgs.model_validate(application["args"])
    raise KeyError(f"no application named {app_name!r} in {config_path}")
