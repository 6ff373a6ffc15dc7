"""Chat LLM deployment: messages in, text out, or a token stream."""

from __future__ import annotations

from typing import AsyncIterator

from ray import serve

from deployments.common import ModelReplica, drained, streamed
from mmserve import metrics
from mmserve.catalog import ModelArgs
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams


@serve.deployment(name="llm")
class ChatLLM(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)

    async def chat(self, messages: list[ChatMessage], params: GenerationParams) -> ChatResult:
        """The whole reply; generated as a stream so that a caller who goes away stops the generation."""
        stream = self.runner.stream(messages, params)
        await drained(stream)
        metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "llm"})
        return stream.result

    async def stream(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[str | ChatResult]:
        """Text deltas as tokens are generated, then the ChatResult (`handle.options(stream=True)`)."""
        stream = self.runner.stream(messages, params)
        async with streamed(stream, "token", "llm") as deltas:
            async for delta in deltas:
                yield delta
        if stream.result is not None:
            metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "llm"})
        yield stream.result  # last item: a ChatResult with token counts and finish reason
