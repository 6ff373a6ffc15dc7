"""Chat LLM deployment: messages in, text out, or a token stream.

LoRA adapters (runner `adapters:`) are Serve multiplexed models: the gateway calls this deployment
with `handle.options(multiplexed_model_id=<adapter>)`, the replica loads the adapter on first use
(`@serve.multiplexed`, at most `max_adapters_per_replica`, least recently used unloaded first) and
Serve routes later requests for it to replicas that hold it. No multiplexed id: the bare model.
"""

from __future__ import annotations

from typing import AsyncIterator

from ray import serve

from deployments import metrics
from deployments.calls import drained, in_thread, streamed
from deployments.common import ModelReplica
from mmserve.catalog import ModelArgs
from mmserve.errors import InvalidInput
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams


class LoadedAdapter:
    """What `@serve.multiplexed` caches per adapter; Serve calls `__del__` when it evicts it."""

    def __init__(self, runner, name: str):
        self.runner, self.name, self._released = runner, name, False

    def __del__(self) -> None:  # Serve calls it on eviction, the garbage collector later again
        if not self._released:
            self._released = True
            self.runner.unload_adapter(self.name)


@serve.deployment(name="llm")
class ChatLLM(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)
        self.adapters = dict(getattr(model.runner, "adapters", None) or {})
        self._load_adapter = None
        self.adapter_loads: dict[str, int] = {}  # calls of Serve's loader per adapter on this replica
        if self.adapters:  # wired per instance, as Ray Serve LLM does: the bound comes from the config
            async def load_adapter(name: str) -> LoadedAdapter:
                self.adapter_loads[name] = self.adapter_loads.get(name, 0) + 1
                await in_thread(self.runner.load_adapter, name)
                return LoadedAdapter(self.runner, name)

            self._load_adapter = serve.multiplexed(
                max_num_models_per_replica=model.runner.max_adapters_per_replica)(load_adapter)

    async def adapter(self) -> str | None:
        """The request's LoRA adapter (Serve's multiplexed model id), loaded on this replica; None: the
        bare model."""
        if not self.adapters:  # nothing to multiplex (and no Serve request context needed)
            return None
        name = serve.get_multiplexed_model_id()
        if not name:
            return None
        if self._load_adapter is None or name not in self.adapters:
            served = ", ".join(self.adapters) or "none"
            raise InvalidInput(f"adapter {name!r} is not served by this model (adapters: {served})", field="model")
        await self._load_adapter(name)
        return name

    def adapter_stats(self) -> dict:
        """Loads per adapter on this replica (Serve's loader calls, and weight loads in the runner) and
        the adapters it holds now (tests, debugging)."""
        return {"replica": serve.get_replica_context().replica_id.unique_id, "loads": dict(self.adapter_loads),
                "weight_loads": dict(self.runner.adapter_loads), "loaded": self.runner.loaded_adapters}

    async def chat(self, messages: list[ChatMessage], params: GenerationParams) -> ChatResult:
        """The whole reply; generated as a stream so that a caller who goes away stops the generation."""
        stream = self.runner.stream(messages, params, await self.adapter())
        await drained(stream)
        metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "llm"})
        return stream.result

    async def stream(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[str | ChatResult]:
        """Text deltas as tokens are generated, then the ChatResult (`handle.options(stream=True)`)."""
        stream = self.runner.stream(messages, params, await self.adapter())
        async with streamed(stream, "token", "llm") as deltas:
            async for delta in deltas:
                yield delta
        if stream.result is not None:
            metrics.tokens_generated().inc(stream.result.completion_tokens, tags={"task": "llm"})
        yield stream.result  # last item: a ChatResult with token counts and finish reason
