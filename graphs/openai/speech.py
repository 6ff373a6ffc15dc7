"""POST /v1/audio/speech: text in; wav, pcm, mp3 or flac out, wav and pcm streamed as decoded.

The sample rate is the one the TTS replica sends with its audio, not a constant here.
"""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import io
import math
import struct

import numpy as np
import soundfile as sf
from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from graphs.openai.protocol import SpeechBody
from graphs.services import Services, services
from graphs.stages import run_stage
from graphs.streams import peek
from mmserve.protocol.tts import SpeechRequest

router = APIRouter(prefix="/v1")


def chattts_speed(speed: float) -> int:
    """OpenAI's 0.25-4.0 multiplier onto ChatTTS's [speed_0..9] levels, 1.0 -> 5."""
    return max(0, min(9, round(5 + 2 * math.log2(speed))))


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A WAV header whose sizes say 'unknown' (0xFFFFFFFF), as streaming players expect."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", unknown))


@router.post("/audio/speech")
async def speech(body: SpeechBody, svc: Services = Depends(services)):
    tts = svc.model("tts", body.model)
    text = svc.limits.check_prompt(body.input, "input")
    request = SpeechRequest(text=text, voice=body.voice, speed=chattts_speed(body.speed), seed=body.seed,
                            speaker_seed=body.speaker_seed, speaker_embedding=body.speaker_embedding)
    if body.stream and body.response_format in ("wav", "pcm"):
        # validation errors surface here, as a 4xx
        first, chunks = await peek("tts", tts.handle.options(stream=True).stream, request)
        rate = first.sample_rate if first is not None else await run_stage("tts", tts.handle.sample_rate)

        async def body_bytes():
            head = streaming_wav_header(rate) if body.response_format == "wav" else b""
            async for chunk in chunks:
                yield head + pcm16(chunk.samples)
                head = b""
            if first is None:
                yield head

        media = "audio/wav" if body.response_format == "wav" else "audio/pcm"
        return StreamingResponse(body_bytes(), media_type=media, headers={"X-Sample-Rate": str(rate)})
    audio = await run_stage("tts", tts.handle.synthesize, request)
    if body.response_format == "pcm":
        return Response(pcm16(audio.samples), media_type="audio/pcm", headers={"X-Sample-Rate": str(audio.sample_rate)})
    buf = io.BytesIO()
    fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}[body.response_format]
    sf.write(buf, audio.samples, audio.sample_rate, format=fmt[0], subtype=fmt[1])
    return Response(buf.getvalue(), media_type=f"audio/{'mpeg' if body.response_format == 'mp3' else body.response_format}")
