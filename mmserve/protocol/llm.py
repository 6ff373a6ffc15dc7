"""Chat messages, sampling parameters and the final result of a chat LLM call.

Built by the gateway and flows, read by the LLM replica; a streamed call yields text deltas and
then one ChatResult.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
