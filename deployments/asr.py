"""Speech recognition deployment: FunASR Paraformer + VAD + punctuation.

Not dynamically batched: FunASR decodes the inputs of one call one after another (its own batching
is over the VAD segments of one input, by `batch_size_s`), so `@serve.batch` would only add its
wait, and one request's bad hotwords would fail the requests batched with it.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator
from ray import serve

from deployments.common import ModelReplica, in_thread, timed
from mmserve import metrics
from mmserve.config import DeploymentArgs, Strict
from mmserve.protocol.asr import Transcript
from mmserve.runners.asr import SAMPLE_RATE, AsrArgs, AsrRunner


class AsrDeploymentArgs(Strict):
    served_name: str = "paraformer"
    runner: AsrArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)

    @model_validator(mode="after")
    def _threads_fit_the_cpus(self) -> "AsrDeploymentArgs":
        # FunASR sets torch's thread count for the whole process: more threads than the replica's
        # CPUs oversubscribe the node and slow every replica beside it.
        cpus = max(1, math.ceil(self.deployment.num_cpus))
        if self.runner.ncpu > cpus:
            raise ValueError(f"runner.ncpu={self.runner.ncpu} is more than the replica's num_cpus "
                             f"({self.deployment.num_cpus}); set ncpu <= {cpus}")
        return self


@serve.deployment(name="asr")
class SpeechRecognition(ModelReplica):
    def __init__(self, args: AsrDeploymentArgs):
        self.runner = self.load_runner(AsrRunner, args.runner, warmup=args.deployment.warmup)

    async def transcribe(self, samples: np.ndarray, hotwords: list[str] | None = None) -> Transcript:
        """16 kHz mono float32 in (decoded at the gateway), transcript out; checked before any work."""
        checked = self.runner.check(samples, SAMPLE_RATE, hotwords)
        result, elapsed = await timed(in_thread(self.runner.run, *checked))
        metrics.audio_seconds().inc(result.duration_s, tags={"task": "asr"})
        if result.duration_s > 0:
            metrics.real_time_factor().observe(elapsed / result.duration_s, tags={"task": "asr"})
        return result


def build(args: AsrDeploymentArgs):
    return SpeechRecognition.options(**args.deployment.serve_options()).bind(args)
