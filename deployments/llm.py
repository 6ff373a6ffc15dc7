"""Chat LLM deployment: messages in, text out, or a token stream."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from pydantic import Field
from ray import serve

from deployments.common import check_device, in_thread, prepare_replica, with_resolved_paths
from mmserve.config import DeploymentArgs, Strict
from mmserve.runners.llm import ChatMessage, ChatResult, GenerationParams, LlmArgs, LlmRunner


class LlmDeploymentArgs(Strict):
    runner: LlmArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)


@serve.deployment(name="llm")
class ChatLLM:
    def __init__(self, args: LlmDeploymentArgs):
        runner_args = with_resolved_paths(args.runner)
        self.device = device = prepare_replica(runner_args.device)
        self.runner = LlmRunner(runner_args.model_copy(update={"device": device}))

    async def chat(self, messages: list[ChatMessage], params: GenerationParams) -> ChatResult:
        return await in_thread(self.runner.chat, messages, params)

    async def stream(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[str]:
        """Text deltas as tokens are generated (call through `handle.options(stream=True)`)."""
        stream = self.runner.stream(messages, params)
        done = object()
        try:
            while (delta := await asyncio.to_thread(next, stream, done)) is not done:
                yield delta
        finally:
            stream.close()  # the client went away or the stream ended: stop generating

    def check_health(self) -> None:
        check_device(self.device)


def build(args: LlmDeploymentArgs):
    return ChatLLM.options(**args.deployment.serve_options()).bind(args)
