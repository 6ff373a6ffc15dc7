"""Text-to-music with Stable Audio Open (diffusers `StableAudioPipeline`).

The pipeline always denoises its full latent window (47.55 s for Stable Audio Open) and crops the
decoded waveform to the requested length, so a request's cost depends on steps and guidance, not
on its duration. The longest duration served is the smaller of the configured limit and that
window. A generation whose caller has gone stops after its current denoising step.
"""

from __future__ import annotations

import secrets
import threading
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import DtypeName, resolve_device, resolve_dtype
from mmserve.errors import ConfigError, InvalidInput, model_load_error
from mmserve.lazy import lazy
from mmserve.protocol.music import MusicRequest
from mmserve.runners.family import Family
from mmserve.runners.progress import Cancel, Progress, Stopped
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

_SEED_LIMIT = 2**64  # torch.Generator.manual_seed accepts [0, 2**64)


class MusicArgs(BaseModel):
    """How to load and run the Stable Audio pipeline."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["diffusers-stable-audio"] = "diffusers-stable-audio"

    model: str = Field(description="local diffusers StableAudioPipeline folder or hub id")
    device: str = Field("auto", description="auto | cpu | cuda[:n]")
    dtype: DtypeName = Field("auto", description="auto (fp16 on GPU, fp32 on CPU) | float32 | float16 | bfloat16")
    default_steps: int = Field(100, ge=1, description="denoising steps when a request gives none")
    max_steps: int = Field(1000, ge=1, description="most steps one request may ask for (bounds replica time)")
    max_duration_s: float = Field(47.0, gt=0, description="longest clip served; Stable Audio Open's window is 47.55 s")
    default_guidance: float = Field(7.0, ge=0, description="CFG scale when a request gives none")


class MusicRunner:
    """Loads the pipeline once; `generate` returns float32 audio shaped (channels, samples).

    Channels are kept as the VAE gives them (2 for Stable Audio Open); note that
    `mmserve.media.encode_wav` (soundfile) wants (samples, channels), i.e. the transpose.
    """

    def __init__(self, args: MusicArgs):
        self.args = args
        self.device = resolve_device(args.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
        self.pipe = self._load()
        vae = self.pipe.vae
        self.sample_rate = int(vae.config.sampling_rate)
        self.channels = int(vae.config.audio_channels)
        window_s = self.pipe.transformer.config.sample_size * vae.hop_length / self.sample_rate
        self.max_duration_s = min(args.max_duration_s, window_s)
        # The scheduler keeps per-call state (timesteps, step index): one generation at a time.
        self._lock = threading.Lock()
        self.progress = Progress()  # denoising steps

    def _load(self):
        from diffusers import StableAudioPipeline

        model = self.args.model
        try:
            pipe = StableAudioPipeline.from_pretrained(model, dtype=self.dtype)
        except ImportError as e:  # Stable Audio Open's CosineDPMSolverMultistepScheduler needs torchsde
            raise ConfigError(f"cannot load {model!r}: {e}", field="model") from e
        except Exception as e:
            raise model_load_error("a Stable Audio pipeline", model, e) from e
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, req: MusicRequest) -> None:
        """Reject what would crash the pipeline or hold the replica for too long."""
        if not req.prompt.strip():
            raise InvalidInput("prompt must not be empty", field="prompt")
        if not 0 < req.duration_s <= self.max_duration_s:
            raise InvalidInput(f"duration_s must be in (0, {self.max_duration_s:g}]", field="duration_s")
        if int(req.duration_s * self.sample_rate) < 1:
            raise InvalidInput("duration_s is shorter than one sample", field="duration_s")
        if req.steps is not None and not 1 <= req.steps <= self.args.max_steps:
            raise InvalidInput(f"steps must be in [1, {self.args.max_steps}]", field="steps")
        if req.guidance_scale is not None and req.guidance_scale < 0:
            raise InvalidInput("guidance_scale must be non-negative", field="guidance_scale")
        if req.seed is not None and not 0 <= req.seed < _SEED_LIMIT:
            raise InvalidInput("seed must be in [0, 2**64)", field="seed")

    def generate(self, req: MusicRequest, cancel: Cancel | None = None) -> np.ndarray | None:
        """float32 samples in [-1, 1]-ish, shape (channels, int(duration_s * sample_rate)); None when
        `cancel` was set (the caller has gone) before the clip was done."""
        self.validate(req)
        seed = req.seed if req.seed is not None else secrets.randbelow(_SEED_LIMIT)
        # A CPU generator gives the same noise, hence the same clip, on CPU and GPU.
        generator = torch.Generator("cpu").manual_seed(seed)

        def on_step(step: int, timestep, latents) -> None:
            self.progress.step()
            if cancel is not None and cancel.is_set():
                raise Stopped

        with self._lock, torch.inference_mode():
            if cancel is not None and cancel.is_set():  # gone while waiting for the lock
                return None
            try:
                out = self.pipe(
                    prompt=req.prompt,
                    # None, not "": the pipeline then guides against an all-zero (null) conditioning.
                    negative_prompt=req.negative_prompt or None,
                    audio_end_in_s=req.duration_s,
                    num_inference_steps=req.steps or self.args.default_steps,
                    guidance_scale=req.guidance_scale if req.guidance_scale is not None else self.args.default_guidance,
                    generator=generator,
                    output_type="np",
                    callback=on_step,  # StableAudioPipeline's per-step hook (it has no callback_on_step_end)
                    callback_steps=1,
                )
            except Stopped:
                self.pipe.maybe_free_model_hooks()
                return None
        return np.ascontiguousarray(out.audios[0], dtype=np.float32)

    def warmup(self) -> None:
        """One short generation, so the first real request does not pay for lazy init."""
        self.generate(MusicRequest(prompt="warmup", duration_s=min(1.0, self.max_duration_s), steps=2, seed=0))


def estimate(args, image_side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    parts = sizes(runner.model, args.family.shipped)
    if parts is None:
        return unknown(args, "no config to size it")
    dtype = gpu_dtype(runner.dtype)
    vae = read_json(folder / "vae", "config.json")
    channels = vae.get("decoder_channels", 128)
    samples = int(runner.max_duration_s * vae.get("sampling_rate", 44100))
    peak = decoder_peak_bytes(channels, channels, samples, DTYPE_BYTES[dtype])
    return ModelEstimate(
        "music", args.name, runner.model, weight_bytes(parts, dtype) / GB, peak / GB,
        f"Oobleck VAE decode of one {runner.max_duration_s:g} s clip ({samples} samples x {channels} "
        "channels at full rate); the DiT's 1024-frame activations are small beside it")


FAMILY = Family("diffusers-stable-audio", "music", MusicArgs, MusicRunner, estimate=estimate,
                tiny={"stable_audio": "mmserve.tiny.stable_audio"},
                shipped={"stabilityai/stable-audio-open-1.0": "stable-audio-open-1.0"})
