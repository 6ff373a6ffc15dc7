"""Speak, get a picture: audio -> ASR -> (LLM rewrites into an English prompt) -> SD3."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel
from ray.serve.handle import DeploymentHandle

from graphs.stages import Stages
from mmserve.config.flows import SpeechToImageArgs
from mmserve.errors import InvalidInput
from mmserve.protocol.audio import Audio
from mmserve.protocol.image import ImageRequest
from mmserve.protocol.llm import ChatMessage, GenerationParams

REWRITE_SYSTEM_PROMPT = (
    "You turn a spoken request (often Chinese) into a concise English prompt for an image "
    "generator. Reply with the prompt only: one line, at most 60 words, no quotes."
)


class SpeechToImageResult(BaseModel):
    transcript: str
    timestamps: list[tuple[int, int]] | None
    audio_duration_s: float
    prompt: str
    images_png: list[bytes]
    timings: dict[str, float]


class SpeechToImageFlow:
    """Each stage starts as soon as its only input, the previous stage's output, is ready."""

    def __init__(self, args: SpeechToImageArgs, asr: DeploymentHandle, llm: DeploymentHandle | None,
                 image: DeploymentHandle, *, stages: Stages | None = None):
        self.args, self.asr, self.llm, self.image = args, asr, llm, image
        self.stages = stages or Stages()  # the gateway's: deadlines and saturation marks

    async def run(self, audio: Audio, image: dict[str, Any], *, hotwords: list[str] | None = None,
                  rewrite: bool | None = None) -> SpeechToImageResult:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        transcript = await self.stages.run("asr", self.asr.transcribe, audio.samples, hotwords, timings=timings)
        text = transcript.text.strip()
        prompt = text
        if (self.args.rewrite_prompt if rewrite is None else rewrite) and self.llm is not None:
            prompt = await self._rewrite(text, timings) or text
        if not prompt:
            raise InvalidInput("no speech was recognized in the audio", field="file", stage="asr")
        request = ImageRequest(prompt=prompt, **image)
        images = await self.stages.run("image", self.image.generate, request, timings=timings)
        timings["total_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return SpeechToImageResult(
            transcript=transcript.text, timestamps=transcript.timestamps,
            audio_duration_s=transcript.duration_s, prompt=prompt, images_png=images, timings=timings,
        )

    async def _rewrite(self, text: str, timings: dict[str, float]) -> str:
        if not text:
            return ""
        messages = [ChatMessage(role="system", content=REWRITE_SYSTEM_PROMPT),
                    ChatMessage(role="user", content=text)]
        params = GenerationParams(max_new_tokens=self.args.rewrite_max_new_tokens,
                                  temperature=self.args.rewrite_temperature)
        result = await self.stages.run("rewrite", self.llm.chat, messages, params, timings=timings)
        return " ".join(result.text.split())
