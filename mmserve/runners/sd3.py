"""Text-to-image with Stable Diffusion 3 (diffusers `StableDiffusion3Pipeline`).

Requests that share a size, step count and guidance scale run as one pipeline call: the denoising
loop costs the same per step whatever the batch, so batching is where the GPU throughput is.
Every image gets its own CPU generator, so a seeded request gives the same pixels alone or batched
and on CPU or GPU. A pipeline call whose callers have all gone stops after its current denoising step
(a step callback raises, so not even the VAE decode runs); one with a caller left runs to its end.
"""

from __future__ import annotations

import logging
import secrets
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import DtypeName, resolve_device, resolve_dtype
from mmserve.errors import ConfigError, InvalidInput, model_load_error
from mmserve.lazy import lazy
from mmserve.protocol.image import ImageRequest
from mmserve.quantization import Quantization, bnb_kwargs
from mmserve.runners.family import Family
from mmserve.runners.progress import Cancel, Progress, Stopped, all_gone
from mmserve.sizing.estimates import (
    DTYPE_BYTES,
    GB,
    ModelEstimate,
    decoder_peak_bytes,
    gpu_dtype,
    model_folder,
    read_json,
    sizes,
    unknown,
    weight_bytes,
)

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

log = logging.getLogger(__name__)

_SEED_LIMIT = 2**64  # torch.Generator.manual_seed accepts [0, 2**64)


class ImageArgs(BaseModel):
    """How to load and run the SD3 pipeline."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["diffusers-sd3"] = "diffusers-sd3"

    model: str = Field(description="local diffusers SD3 folder or hub id")
    device: str = Field("auto", description="auto | cpu | cuda[:n]")
    dtype: DtypeName = Field("auto", description="auto (fp16 on GPU, fp32 on CPU) | float32 | float16 | bfloat16")
    drop_t5: bool = Field(False, description="load without the T5 encoder (~4.7B params); weaker prompt following")
    quantization: Quantization = Field(
        "none", description="bitsandbytes for the transformer and T5 encoder; needs CUDA"
    )
    cpu_offload: bool = Field(False, description="keep idle components in CPU memory; needs CUDA")
    default_steps: int = Field(28, ge=1, description="denoising steps when a request gives none")
    default_guidance: float = Field(7.0, ge=0, description="CFG scale when a request gives none")
    max_sequence_length: int = Field(256, ge=1, le=512, description="T5 prompt tokens")
    max_images_per_call: int = Field(
        4, ge=1, description="most images in one pipeline call; a larger batch runs as several calls "
        "(activation memory grows with images per call)")
    vae_slicing: bool = Field(True, description="decode one image at a time: the batched VAE decode is SD3's memory peak")


BatchKey = tuple[int, int, int, float]


class ImageRunner:
    """Loads SD3 once; `generate` serves a list of requests in as few pipeline calls as possible."""

    def __init__(self, args: ImageArgs):
        self.args = args
        self.device = resolve_device(args.device)
        on_cuda = self.device.startswith("cuda")
        # Refuse impossible configs before spending minutes loading weights.
        self.dtype = resolve_dtype(args.dtype, self.device)
        self._bnb = bnb_kwargs(args.quantization, self.device, self.dtype)
        if args.cpu_offload and not on_cuda:
            raise ConfigError("cpu_offload needs a CUDA device", field="cpu_offload")
        self.pipe = self._load()
        self.progress = Progress()  # denoising steps, one per pipeline call per step

    def _load(self):
        from diffusers import StableDiffusion3Pipeline

        args = self.args
        kwargs: dict = {"dtype": self.dtype}
        if args.drop_t5:
            kwargs.update(text_encoder_3=None, tokenizer_3=None)
        if self._bnb is not None:
            kwargs["quantization_config"] = self._quantization_config()
        try:
            pipe = StableDiffusion3Pipeline.from_pretrained(args.model, **kwargs)
        except Exception as e:
            raise model_load_error("an SD3 pipeline", args.model, e) from e
        if args.vae_slicing:
            pipe.vae.enable_slicing()
        if args.cpu_offload:  # offload moves each component to the GPU when it runs: never also .to()
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _quantization_config(self):
        """bitsandbytes for the two big components: the MMDiT (diffusers) and T5 (transformers)."""
        from diffusers import BitsAndBytesConfig as DiffusersBnb
        from diffusers import PipelineQuantizationConfig
        from transformers import BitsAndBytesConfig as TransformersBnb

        mapping = {"transformer": DiffusersBnb(**self._bnb)}
        if not self.args.drop_t5:
            mapping["text_encoder_3"] = TransformersBnb(**self._bnb)
        return PipelineQuantizationConfig(quant_mapping=mapping)

    @staticmethod
    def validate(req: ImageRequest) -> None:
        """Reject what would crash the pipeline; call before batching so one bad request fails alone."""
        for name in ("width", "height"):
            value = getattr(req, name)
            if value < 16 or value % 16:
                raise InvalidInput(f"{name} must be a positive multiple of 16, got {value}", field=name)
        if req.num_images < 1:
            raise InvalidInput("num_images must be at least 1", field="num_images")
        if req.num_inference_steps is not None and req.num_inference_steps < 1:
            raise InvalidInput("num_inference_steps must be at least 1", field="num_inference_steps")
        if req.guidance_scale is not None and req.guidance_scale < 0:
            raise InvalidInput("guidance_scale must be non-negative", field="guidance_scale")
        if req.seed is not None and not 0 <= req.seed < _SEED_LIMIT:
            raise InvalidInput(f"seed must be in [0, 2**64), got {req.seed}", field="seed")

    def batch_key(self, req: ImageRequest) -> BatchKey:
        """Requests with equal keys can share one pipeline call."""
        steps = req.num_inference_steps if req.num_inference_steps is not None else self.args.default_steps
        guidance = req.guidance_scale if req.guidance_scale is not None else self.args.default_guidance
        return (req.width, req.height, steps, float(guidance))

    def generate(self, requests: list[ImageRequest],
                 cancels: list[Cancel | None] | None = None) -> list[list[Image.Image]]:
        """Images for each request, in request order (one inner list of num_images per request).

        `cancels[i]` set (request i's caller has gone): its images may be left out, i.e. an empty list.
        """
        for req in requests:
            self.validate(req)
        cancels = cancels or [None] * len(requests)
        groups: dict[BatchKey, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(self.batch_key(req), []).append(i)
        results: list[list[Image.Image]] = [[] for _ in requests]
        for key, members in groups.items():
            images = self._run(key, [requests[i] for i in members], [cancels[i] for i in members])
            for i in members:
                mine, images = images[: requests[i].num_images], images[requests[i].num_images :]
                results[i] = [] if any(image is None for image in mine) else mine
        return results

    def _run(self, key: BatchKey, group: list[ImageRequest], cancels: list[Cancel | None]) -> list[Image.Image | None]:
        """Pipeline calls of at most max_images_per_call rows; each row has its own prompt and generator.
        A call whose requests have all gone is skipped or stopped: its rows are None."""
        width, height, steps, guidance = key
        rows = []
        for req, cancel in zip(group, cancels):
            base = req.seed if req.seed is not None else secrets.randbelow(_SEED_LIMIT)
            for k in range(req.num_images):
                rows.append((req.prompt, req.negative_prompt,
                             torch.Generator("cpu").manual_seed((base + k) % _SEED_LIMIT), cancel))
        images: list[Image.Image | None] = []
        per_call = self.args.max_images_per_call
        for start in range(0, len(rows), per_call):
            prompts, negatives, generators, row_cancels = (list(col) for col in zip(*rows[start : start + per_call]))
            try:
                with torch.inference_mode():
                    out = self.pipe(
                        prompt=prompts,
                        negative_prompt=negatives,
                        width=width,
                        height=height,
                        num_inference_steps=steps,
                        guidance_scale=guidance,
                        generator=generators,
                        max_sequence_length=self.args.max_sequence_length,
                        callback_on_step_end=self._step_callback(row_cancels),
                        callback_on_step_end_tensor_inputs=[],
                    )
                images.extend(out.images)
            except Stopped:
                self.pipe.maybe_free_model_hooks()  # what the pipeline does at its own end (CPU offload)
                images.extend([None] * len(prompts))
        return images

    def _step_callback(self, cancels: list[Cancel | None]):
        """Counts each denoising step; raises Stopped once every caller of this call has gone
        (checked before the first step too, so a call nobody waits for does not start)."""
        if all_gone(cancels):
            raise Stopped

        def on_step_end(pipe, step: int, timestep, tensors: dict) -> dict:
            self.progress.step()
            if all_gone(cancels):
                raise Stopped
            return {}

        return on_step_end

    def warmup(self) -> None:
        """One small generation, so the first real request does not pay for lazy init and kernels."""
        self.generate([ImageRequest(prompt="warmup", width=128, height=128, num_inference_steps=2, seed=0)])


SD3_TEXT_TOKENS = 77 + 256  # CLIP + T5 (max_sequence_length) tokens joined to the image tokens


def estimate(args, image_side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    parts = sizes(runner.model, args.family.shipped)
    if parts is None:
        return unknown(args, "no config to size it")
    if runner.drop_t5:
        parts = tuple(p for p in parts if p.name != "text_encoder_3")
    dtype = gpu_dtype(runner.dtype)
    bytes_ = DTYPE_BYTES[dtype]
    vae = read_json(folder / "vae", "config.json")
    transformer = read_json(folder / "transformer", "config.json")
    channels = vae.get("block_out_channels", [128, 256])
    vae_peak = decoder_peak_bytes(channels[1], channels[0], image_side * image_side, bytes_)
    hidden = transformer.get("num_attention_heads", 24) * transformer.get("attention_head_dim", 64)
    image_tokens = (image_side // 8 // transformer.get("patch_size", 2)) ** 2
    per_image = 2 * (image_tokens + SD3_TEXT_TOKENS) * hidden * 12 * bytes_  # CFG doubles the batch
    images = getattr(runner, "max_images_per_call", 1)
    slicing = getattr(runner, "vae_slicing", False)
    total = per_image * images + vae_peak * (1 if slicing else images)
    weights = weight_bytes(parts, dtype, runner.quantization, quantized={"transformer", "text_encoder_3"})
    return ModelEstimate(
        "image", args.name, runner.model, weights / GB, total / GB,
        f"{image_side}x{image_side} (gateway max_image_side): VAE decode peak {vae_peak / GB:.2f} GB per image "
        f"{'once (vae_slicing)' if slicing else f'x {images} images'} + MMDiT activations "
        f"{per_image / GB:.2f} GB per image x {images} images per call (max_images_per_call)")


FAMILY = Family("diffusers-sd3", "image", ImageArgs, ImageRunner, estimate=estimate, tiny={"sd3": "mmserve.tiny.sd3"},
                shipped={"stabilityai/stable-diffusion-3-medium-diffusers": "sd3-medium"})
