"""Speaking a whole text through the TTS deployment: cut into pieces, synthesized concurrently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from ray.serve.handle import DeploymentHandle

from graphs.clauses import split_text
from graphs.stages import Stages
from mmserve.errors import InvalidInput
from mmserve.media import b64encode, encode_wav
from mmserve.protocol.audio import Audio
from mmserve.protocol.tts import SpeechRequest


@dataclass
class Speech:
    samples: np.ndarray | None
    sample_rate: int  # the TTS model's, as it sent it with its audio
    skipped: list[str] = field(default_factory=list)  # pieces with nothing speakable, reported

    def to_json(self) -> dict:
        if self.samples is None or not len(self.samples):
            return {"b64_wav": None, "sample_rate": self.sample_rate, "duration_s": 0.0, "skipped_text": self.skipped}
        return {"b64_wav": b64encode(encode_wav(self.samples, self.sample_rate)), "sample_rate": self.sample_rate,
                "duration_s": round(len(self.samples) / self.sample_rate, 3), "skipped_text": self.skipped}


async def speak(stages: Stages, tts: DeploymentHandle, text: str, *, voice: str | None, max_chars: int = 200) -> Speech:
    """Pieces go out together, so the TTS deployment batches them; a piece ChatTTS cannot speak
    (digits or symbols only) is skipped and listed, not an error for the whole answer."""
    pieces = split_text(text, max_chars=max_chars)
    calls = [stages.run("tts", tts.synthesize, SpeechRequest(text=piece, voice=voice)) for piece in pieces]
    results = await asyncio.gather(*calls, return_exceptions=True)
    audio: list[Audio] = []
    skipped: list[str] = []
    for piece, result in zip(pieces, results):
        if isinstance(result, BaseException):
            if isinstance(result, InvalidInput) and result.field == "input":
                skipped.append(piece)
                continue
            raise result
        audio.append(result)
    if not audio:  # nothing spoken: the rate is still the model's, for the response's sample_rate
        return Speech(None, await stages.run("tts", tts.sample_rate), skipped=skipped)
    return Speech(np.concatenate([a.samples for a in audio]), audio[0].sample_rate, skipped=skipped)
