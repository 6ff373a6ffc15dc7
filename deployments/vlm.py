"""Vision-language deployment: InternVL / LLaVA via lmdeploy (GPU) or transformers."""

from __future__ import annotations

from typing import AsyncIterator

from pydantic import Field, model_validator
from ray import serve

from deployments.common import ModelReplica, check_tensor_parallel, drained, streamed
from mmserve import metrics
from mmserve.config import DeploymentArgs, Strict
from mmserve.protocol.vlm import VlmRequest, VlmResult
from mmserve.runners.vlm import VlmArgs, VlmRunner


class VlmDeploymentArgs(Strict):
    served_name: str = "internvl"
    runner: VlmArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)

    @model_validator(mode="after")
    def _tensor_parallel_has_its_gpus(self) -> "VlmDeploymentArgs":
        check_tensor_parallel(self.runner, self.deployment)
        return self


@serve.deployment(name="vlm")
class VisionLanguage(ModelReplica):
    def __init__(self, args: VlmDeploymentArgs):
        self.runner = self.load_runner(VlmRunner, args.runner, warmup=args.deployment.warmup)

    async def answer(self, request: VlmRequest) -> VlmResult:
        """The whole answer; generated as a stream so that a caller who goes away stops the generation."""
        stream = self.runner.stream(request)
        await drained(stream)
        metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "vlm"})
        return stream.result

    async def stream(self, request: VlmRequest) -> AsyncIterator[str]:
        """Text deltas as tokens are generated (call with `handle.options(stream=True)`)."""
        async with streamed(self.runner.stream(request), "token", "vlm") as deltas:
            async for delta in deltas:
                yield delta


def build(args: VlmDeploymentArgs):
    return VisionLanguage.options(**args.deployment.serve_options()).bind(args)
