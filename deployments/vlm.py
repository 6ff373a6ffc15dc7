"""Vision-language deployment: InternVL / LLaVA via lmdeploy (GPU) or transformers."""

from __future__ import annotations

from typing import AsyncIterator

from ray import serve

from deployments import metrics
from deployments.calls import drained, streamed
from deployments.common import ModelReplica
from mmserve.catalog import ModelArgs
from mmserve.protocol.vlm import VlmRequest, VlmResult


@serve.deployment(name="vlm")
class VisionLanguage(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)

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
