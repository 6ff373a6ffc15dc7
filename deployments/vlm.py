"""Vision-language deployment: InternVL / LLaVA via lmdeploy (GPU) or transformers."""

from __future__ import annotations

from typing import AsyncIterator

from pydantic import Field
from ray import serve

from deployments.common import ModelReplica, in_thread, iterate_in_thread
from mmserve.config import DeploymentArgs, Strict
from mmserve.runners.vlm import VlmArgs, VlmRequest, VlmResult, VlmRunner


class VlmDeploymentArgs(Strict):
    served_name: str = "internvl"
    runner: VlmArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)


@serve.deployment(name="vlm")
class VisionLanguage(ModelReplica):
    def __init__(self, args: VlmDeploymentArgs):
        self.runner = self.load_runner(VlmRunner, args.runner)

    async def answer(self, request: VlmRequest) -> VlmResult:
        return await in_thread(self.runner.answer, request)

    async def stream(self, request: VlmRequest) -> AsyncIterator[str]:
        """Text deltas as tokens are generated (call with `handle.options(stream=True)`)."""
        async for delta in iterate_in_thread(self.runner.stream(request)):
            yield delta


def build(args: VlmDeploymentArgs):
    return VisionLanguage.options(**args.deployment.serve_options()).bind(args)
