"""Vision-language deployment: InternVL / LLaVA via lmdeploy (GPU) or transformers."""

from __future__ import annotations

from typing import AsyncIterator

from pydantic import Field, model_validator
from ray import serve

from deployments.common import ModelReplica, check_tensor_parallel, first_item_timer, in_thread, iterate_in_thread
from mmserve import metrics
from mmserve.config import DeploymentArgs, Strict
from mmserve.runners.vlm import VlmArgs, VlmRequest, VlmResult, VlmRunner


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
        result = await in_thread(self.runner.answer, request)
        metrics.tokens_generated().inc(result.completion_tokens, tags={"task": "vlm"})
        return result

    async def stream(self, request: VlmRequest) -> AsyncIterator[str]:
        """Text deltas as tokens are generated (call with `handle.options(stream=True)`)."""
        async for delta in first_item_timer(iterate_in_thread(self.runner.stream(request)), "token", "vlm"):
            yield delta


def build(args: VlmDeploymentArgs):
    return VisionLanguage.options(**args.deployment.serve_options()).bind(args)
