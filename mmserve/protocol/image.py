"""One text-to-image request (built by the gateway and flows, batched by the image replica)."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel


class ImageRequest(BaseModel):
    """One prompt; num_images images of width x height."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    num_images: int = 1


class ImageRunner(Protocol):
    """What the image deployment calls: validate one request, then generate a batch of them (one list
    of images per request; a cancelled request's entry may be empty)."""

    progress: Any

    def warmup(self) -> None: ...

    def validate(self, req: ImageRequest) -> None: ...

    def generate(self, requests: list[ImageRequest], cancels: list[Any] | None = None) -> list[list[Any]]: ...
