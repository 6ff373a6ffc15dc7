"""Chat LLM deployment: messages in, text out, or a token stream."""

from __future__ import annotations

from typing import AsyncIterator

from pydantic import Field, model_validator
from ray import serve

from deployments.common import ModelReplica, check_tensor_parallel, first_item_timer, in_thread, iterate_in_thread
from mmserve import metrics
from mmserve.config import DeploymentArgs, Strict
from mmserve.runners.llm import ChatMessage, ChatResult, GenerationParams, LlmArgs, LlmRunner


class LlmDeploymentArgs(Strict):
    served_name: str = "qwen2.5-7b-instruct"
    runner: LlmArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)

    @model_validator(mode="after")
    def _tensor_parallel_has_its_gpus(self) -> "LlmDeploymentArgs":
        check_tensor_parallel(self.runner, self.deployment)
        return self


@serve.deployment(name="llm")
class ChatLLM(ModelReplica):
    def __init__(self, args: LlmDeploymentArgs):
        self.runner = self.load_runner(LlmRunner, args.runner, warmup=args.deployment.warmup)

    async def chat(self, messages: list[ChatMessage], params: GenerationParams) -> ChatResult:
        result = await in_thread(self.runner.chat, messages, params)
        metrics.tokens_generated().inc(result.completion_tokens, tags={"task": "llm"})
        return result

    async def stream(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[str | ChatResult]:
        """Text deltas as tokens are generated, then the ChatResult (`handle.options(stream=True)`)."""
        stream = self.runner.stream(messages, params)
        async for delta in first_item_timer(iterate_in_thread(stream), "token", "llm"):
            yield delta
        if stream.result is not None:
            metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "llm"})
        yield stream.result  # last item: a ChatResult with token counts and finish reason


def build(args: LlmDeploymentArgs):
    return ChatLLM.options(**args.deployment.serve_options()).bind(args)
