"""Speech synthesis deployment: ChatTTS, whole clips batched, or chunks streamed as decoded."""

from __future__ import annotations

from typing import AsyncIterator

import numpy as np
from ray import serve

from deployments import metrics
from deployments.calls import cancelled_with_caller, in_thread, streamed, timed
from deployments.common import BatchedReplica
from mmserve.catalog import ModelArgs
from mmserve.protocol.audio import Audio
from mmserve.protocol.tts import SpeechRequest
from mmserve.runners.progress import Cancel


@serve.deployment(name="tts")
class SpeechSynthesis(BatchedReplica):
    batched_method = "synthesize_batch"

    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)
        self.apply_batching(model.batching)

    def sample_rate(self) -> int:
        return self.runner.sample_rate

    async def synthesize(self, request: SpeechRequest) -> Audio:
        """Float32 mono with the model's rate; validated before batching so a bad request fails alone.
        A caller that goes away stops its GPT batch within one code once the batch's callers have all gone."""
        self.runner.validate(request)
        cancel = Cancel(self.runner.progress)
        async with cancelled_with_caller(cancel):
            return Audio(await self.synthesize_batch(request, cancel), self.runner.sample_rate)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def synthesize_batch(self, requests: list[SpeechRequest], cancels: list[Cancel]) -> list[np.ndarray]:
        clips, elapsed = await timed(in_thread(self.runner.synthesize, requests, cancels))
        audio_s = sum(len(clip) for clip in clips) / self.runner.sample_rate
        metrics.batch_size().observe(len(requests))
        metrics.audio_seconds().inc(audio_s, tags={"task": "tts"})
        if audio_s > 0:
            metrics.real_time_factor().observe(elapsed / audio_s, tags={"task": "tts"})
        return clips

    async def stream(self, request: SpeechRequest) -> AsyncIterator[Audio]:
        """Chunks leave as soon as ChatTTS decodes them (call with `handle.options(stream=True)`); a
        client that goes away cancels the runner's stream, which stops ChatTTS within one code."""
        async with streamed(self.runner.stream(request), "audio", "tts") as chunks:
            async for chunk in chunks:
                yield Audio(chunk, self.runner.sample_rate)
