"""Speech recognition deployment: FunASR Paraformer + VAD + punctuation, dynamically batched."""

from __future__ import annotations

import numpy as np
from pydantic import Field
from ray import serve

from deployments.common import BatchedReplica, in_thread, timed
from mmserve import metrics
from mmserve.config import BatchArgs, DeploymentArgs, Strict
from mmserve.runners.asr import AsrArgs, AsrRunner, Transcript


class AsrDeploymentArgs(Strict):
    served_name: str = "paraformer"
    runner: AsrArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)
    batch: BatchArgs = Field(default_factory=BatchArgs)


@serve.deployment(name="asr")
class SpeechRecognition(BatchedReplica):
    batched_method = "transcribe_batch"

    def __init__(self, args: AsrDeploymentArgs):
        self.runner = self.load_runner(AsrRunner, args.runner, warmup=args.deployment.warmup)
        self.apply_batching(args.batch)

    async def transcribe(self, samples: np.ndarray, hotwords: list[str] | None = None) -> Transcript:
        """16 kHz mono float32 in (decoded at the gateway), transcript out."""
        return await self.transcribe_batch((samples, hotwords))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def transcribe_batch(self, items: list[tuple[np.ndarray, list[str] | None]]) -> list[Transcript]:
        results, elapsed = await timed(in_thread(self.runner.transcribe_batch, items))
        audio_s = sum(len(samples) for samples, _ in items) / 16000
        metrics.batch_size().observe(len(items))
        metrics.audio_seconds().inc(audio_s, tags={"task": "asr"})
        if audio_s > 0:
            metrics.real_time_factor().observe(elapsed / audio_s, tags={"task": "asr"})
        return results


def build(args: AsrDeploymentArgs):
    return SpeechRecognition.options(**args.deployment.serve_options()).bind(args)
