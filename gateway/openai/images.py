"""POST /v1/images/generations: a prompt in, base64 PNGs out (images are not stored, so no URLs)."""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import time

from fastapi import APIRouter, Depends

from gateway.openai.protocol import ImageBody
from gateway.services import Services, services
from mmserve.errors import InvalidInput
from mmserve.media import b64encode
from mmserve.protocol.image import ImageRequest

router = APIRouter(prefix="/v1")


def parse_size(size: str | None, default_w: int, default_h: int) -> tuple[int, int]:
    if size is None or size == "auto":
        return default_w, default_h
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InvalidInput(f"size must look like 1024x1024, got {size!r}", field="size") from None
    return width, height


@router.post("/images/generations")
async def images(body: ImageBody, svc: Services = Depends(services)) -> dict:
    image = svc.model("image", body.model)
    if body.response_format == "url":
        raise InvalidInput("response_format 'url' is not supported (images are not stored); use b64_json",
                           field="response_format")
    limits = svc.limits
    prompt = limits.check_prompt(body.prompt, "prompt")
    negative = limits.check_prompt(body.negative_prompt, "negative_prompt", required=False)
    width, height = parse_size(body.size, svc.image_defaults.width, svc.image_defaults.height)
    try:
        limits.check_image_options(width=width, height=height, steps=body.steps, guidance=body.guidance_scale, n=body.n)
    except InvalidInput as exc:
        if exc.field in ("width", "height"):
            exc.field = "size"
        raise
    request = ImageRequest(prompt=prompt, negative_prompt=negative, width=width, height=height,
                           num_inference_steps=body.steps, guidance_scale=body.guidance_scale, seed=body.seed,
                           num_images=body.n)
    pngs = await svc.stages.run("image", image.handle.generate, request)
    return {"created": int(time.time()), "data": [{"b64_json": b64encode(png)} for png in pngs]}
