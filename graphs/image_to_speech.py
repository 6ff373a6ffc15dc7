"""Describe aloud (image -> VLM -> speech) and a spoken question about an image
(image + speech -> ASR -> VLM -> speech)."""

from __future__ import annotations

import time

from PIL import Image
from ray.serve.handle import DeploymentHandle

from graphs.speech_out import speak
from graphs.stages import Stages
from mmserve.config.flows import ImageToSpeechArgs
from mmserve.errors import InvalidInput
from mmserve.protocol.audio import Audio
from mmserve.protocol.vlm import VlmRequest


class ImageToSpeechFlow:
    def __init__(self, args: ImageToSpeechArgs, vlm: DeploymentHandle, tts: DeploymentHandle,
                 asr: DeploymentHandle | None, *, stages: Stages | None = None):
        self.args, self.vlm, self.tts, self.asr = args, vlm, tts, asr
        self.stages = stages or Stages()  # the gateway's: deadlines and saturation marks

    async def describe(self, images: list[Image.Image], *, question: str | None, voice: str | None) -> dict:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        answer = await self._answer(images, question or self.args.describe_prompt, timings)
        speech = await self.stages.run("tts", speak(self.stages, self.tts, answer, voice=voice), timings=timings)
        timings["total_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return {"description": answer, "audio": speech.to_json(), "timings": timings}

    async def spoken_question(self, images: list[Image.Image], audio: Audio, *, voice: str | None) -> dict:
        if self.asr is None:
            raise InvalidInput("no speech recognition model is served", field="file")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        transcript = await self.stages.run("asr", self.asr.transcribe, audio.samples, None, timings=timings)
        if not transcript.text.strip():
            raise InvalidInput("no speech was recognized in the audio", field="file", stage="asr")
        answer = await self._answer(images, transcript.text, timings)
        speech = await self.stages.run("tts", speak(self.stages, self.tts, answer, voice=voice), timings=timings)
        timings["total_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return {"question": transcript.text, "answer": answer, "audio": speech.to_json(), "timings": timings}

    async def _answer(self, images: list[Image.Image], question: str, timings: dict) -> str:
        request = VlmRequest(question=question, images=images, max_new_tokens=self.args.max_new_tokens)
        result = await self.stages.run("vlm", self.vlm.answer, request, timings=timings)
        return result.text
