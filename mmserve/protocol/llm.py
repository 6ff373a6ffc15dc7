"""Chat messages, sampling parameters and the final result of a chat LLM call.

Built by the gateway and flows, read by the LLM replica; a streamed call yields text deltas and
then one ChatResult.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int | None = None  # None: the runner's max_new_tokens
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 0.9
    seed: int | None = None  # same seed, same prompt, same replica setup -> same sample
    stop: list[str] | None = None  # text ends before the first of these; they are not returned


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class LlmRunner(Protocol):
    """What the LLM deployment calls: a stream of text deltas (then a ChatResult) for a chat, on the
    base model or a LoRA adapter by name, and adapter loading for multiplexing."""

    adapter_loads: dict
    loaded_adapters: list[str]

    def warmup(self) -> None: ...

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams = ...,
               adapter: str | None = None) -> Iterator[Any]: ...

    def load_adapter(self, name: str) -> None: ...

    def unload_adapter(self, name: str) -> None: ...
