"""One question about decoded images, and the answer, for the vision-language replica.

Images travel decoded (PIL): the gateway decodes and size-checks them once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from mmserve.protocol.llm import FinishReason


@dataclass
class VlmRequest:
    """One question about zero or more decoded images. ``temperature=0`` is greedy decoding."""

    question: str
    images: list[Image.Image] = field(default_factory=list)
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    min_new_tokens: int = 0  # set by the runner from its config, never by a client


@dataclass
class VlmResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class VlmRunner(Protocol):
    """What the VLM deployment calls: a stream of text deltas that ends with its VlmResult."""

    def warmup(self) -> None: ...

    def stream(self, req: VlmRequest) -> Iterator[Any]: ...
