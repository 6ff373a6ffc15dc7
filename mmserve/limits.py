"""Request limits from config, checked at the gateway before any model work."""

from __future__ import annotations

from pydantic import Field

from mmserve.config import Strict
from mmserve.errors import InvalidInput, PayloadTooLarge


class Limits(Strict):
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)
    max_audio_s: float = Field(300.0, gt=0)
    max_prompt_chars: int = Field(2000, ge=1)
    min_image_side: int = Field(64, ge=16)
    max_image_side: int = Field(1536, ge=16)
    image_side_multiple: int = Field(16, ge=1)
    max_steps: int = Field(100, ge=1)
    max_images_per_request: int = Field(4, ge=1)
    max_guidance: float = Field(30.0, ge=0)
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="uploaded images (VLM input)")

    def check_upload_size(self, size: int, field: str) -> None:
        if size > self.max_upload_bytes:
            raise PayloadTooLarge(f"upload is {size} bytes; the limit is {self.max_upload_bytes}", field=field)

    def check_prompt(self, text: str | None, field: str = "prompt", *, required: bool = True) -> str:
        text = (text or "").strip()
        if required and not text:
            raise InvalidInput(f"{field} must not be empty", field=field)
        if len(text) > self.max_prompt_chars:
            raise InvalidInput(f"{field} is {len(text)} characters; the limit is {self.max_prompt_chars}", field=field)
        return text

    def check_image_options(self, *, width: int, height: int, steps: int | None, guidance: float | None,
                            n: int) -> None:
        for name, side in (("width", width), ("height", height)):
            if not self.min_image_side <= side <= self.max_image_side or side % self.image_side_multiple:
                raise InvalidInput(
                    f"{name} must be a multiple of {self.image_side_multiple} between "
                    f"{self.min_image_side} and {self.max_image_side}, got {side}", field=name)
        if steps is not None and not 1 <= steps <= self.max_steps:
            raise InvalidInput(f"steps must be between 1 and {self.max_steps}, got {steps}", field="steps")
        if guidance is not None and not 0 <= guidance <= self.max_guidance:
            raise InvalidInput(f"guidance must be between 0 and {self.max_guidance}, got {guidance}", field="guidance")
        if not 1 <= n <= self.max_images_per_request:
            raise InvalidInput(f"n must be between 1 and {self.max_images_per_request}, got {n}", field="n")
