"""Speech recognition deployment: FunASR Paraformer + VAD + punctuation (or faster-whisper), the
streaming VAD that finds turns in live audio, and streaming recognizers' partial transcripts.

Not dynamically batched: FunASR decodes the inputs of one call one after another (its own batching
is over the VAD segments of one input, by `batch_size_s`), so `@serve.batch` would only add its
wait, and one request's bad hotwords would fail the requests batched with it.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments import metrics
from deployments.calls import in_thread, timed
from deployments.common import ModelReplica
from mmserve.catalog import ModelArgs
from mmserve.errors import InvalidInput
from mmserve.protocol.asr import StreamStep, Transcript, VadStep
from mmserve.runners.speech_input import SAMPLE_RATE


@serve.deployment(name="asr")
class SpeechRecognition(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)
        self.streams = model.family.streams

    async def transcribe(self, samples: np.ndarray, hotwords: list[str] | None = None) -> Transcript:
        """16 kHz mono float32 in (decoded at the gateway), transcript out; checked before any work."""
        checked = self.runner.check(samples, SAMPLE_RATE, hotwords)
        result, elapsed = await timed(in_thread(self.runner.run, *checked))
        metrics.audio_seconds().inc(result.duration_s, tags={"task": "asr"})
        if result.duration_s > 0:
            metrics.real_time_factor().observe(elapsed / result.duration_s, tags={"task": "asr"})
        return result

    async def detect_speech(self, state: bytes | None, samples: np.ndarray, silence_ms: int,
                            final: bool = False) -> VadStep:
        """The next chunk of a live 16 kHz stream through the streaming VAD (turn detection, ~every
        100 ms per session); the state travels with the call, so any replica can take any chunk."""
        return await in_thread(self.runner.detect_speech, state, samples, silence_ms=silence_ms, final=final)

    async def stream(self, turn: str, seq: int, samples: np.ndarray, final: bool = False) -> StreamStep:
        """The next chunk of a live turn through a streaming recognizer (a partial transcript). The
        session is the call's multiplexed model id (`handle.options(multiplexed_model_id=session)`),
        which `deployments/routing.py` routes to the replica that holds the session's streams."""
        session = serve.get_multiplexed_model_id()
        if not session:
            raise InvalidInput("a stream call needs the session as its multiplexed model id", field="session")
        if not self.streams:
            raise InvalidInput(f"{type(self.runner).__name__} does not stream; name a streaming ASR model "
                               "(family funasr-paraformer-streaming)", field="partials_model")
        return await in_thread(self.runner.stream, session, turn, seq, samples, final=final)

