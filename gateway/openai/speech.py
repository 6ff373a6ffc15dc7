"""POST /v1/audio/speech: text in; wav, pcm, mp3 or flac out, wav and pcm streamed as decoded.

`stream_format: "sse"` sends the same chunks as OpenAI's `speech.audio.delta` events (base64 of the
bytes `stream_format: "audio"` would send) and ends with `speech.audio.done`. That event has no
`usage`: neither the text's tokens nor ChatTTS's audio codes reach the gateway, and invented counts
would mislead. The sample rate is the one the TTS replica sends with its audio, not a constant here.
"""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import base64
import io
import math
import struct
from typing import AsyncIterator

import soundfile as sf
from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from gateway.openai.protocol import SpeechBody, VoiceId
from gateway.services import Services, services
from gateway.streams import peek, sse
from graphs.stages import stage_error
from mmserve.errors import InvalidInput
from mmserve.media import pcm16
from mmserve.protocol.audio import Audio
from mmserve.protocol.tts import SpeechRequest

router = APIRouter(prefix="/v1")


def chattts_speed(speed: float) -> int:
    """OpenAI's 0.25-4.0 multiplier onto ChatTTS's [speed_0..9] levels, 1.0 -> 5."""
    return max(0, min(9, round(5 + 2 * math.log2(speed))))


def streaming_wav_header(sample_rate: int) -> bytes:
    """A WAV header whose sizes say 'unknown' (0xFFFFFFFF), as streaming players expect."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", unknown))


def sse_audio_format(body: SpeechBody) -> str:
    """The format an SSE stream's deltas carry: pcm or wav, the ones that can be cut as decoded (pcm
    when unset, where OpenAI would pick mp3: its frames cannot be cut from ChatTTS's chunks here)."""
    if not body.stream:
        raise InvalidInput("stream_format 'sse' streams; it cannot be combined with stream false",
                           field="stream_format")
    fmt = body.response_format if "response_format" in body.model_fields_set else "pcm"
    if fmt not in ("pcm", "wav"):
        raise InvalidInput(f"response_format {fmt!r} cannot be streamed as stream_format 'sse'; use pcm or wav "
                           "(or stream_format 'audio')", field="response_format")
    return fmt


async def audio_bytes(chunks: AsyncIterator[Audio], fmt: str, rate: int) -> AsyncIterator[bytes]:
    """PCM16 of each chunk, the first one behind a streaming WAV header when fmt is wav (the header
    alone when there is no audio at all)."""
    head = streaming_wav_header(rate) if fmt == "wav" else b""
    async for chunk in chunks:
        yield head + pcm16(chunk.samples)
        head = b""
    if head:
        yield head


async def speech_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """OpenAI's speech SSE events; a failure after the first event becomes a last `error` event naming
    the stage, as on every streamed route."""
    try:
        async for piece in pieces:
            yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()})
    except Exception as exc:
        yield sse({"type": "error", **stage_error("tts", exc).to_dict()})
        return
    yield sse({"type": "speech.audio.done"})


@router.post("/audio/speech")
async def speech(body: SpeechBody, svc: Services = Depends(services)):
    tts = svc.model("tts", body.model)
    text = svc.limits.check_prompt(body.input, "input")
    fmt = sse_audio_format(body) if body.stream_format == "sse" else body.response_format
    voice = body.voice.id if isinstance(body.voice, VoiceId) else body.voice
    request = SpeechRequest(text=text, voice=voice, instructions=body.instructions, speed=chattts_speed(body.speed),
                            seed=body.seed, speaker_seed=body.speaker_seed, speaker_embedding=body.speaker_embedding)
    if body.stream and fmt in ("wav", "pcm"):
        # validation errors surface here, as a 4xx
        first, chunks = await peek(svc.stages, "tts", tts.handle.options(stream=True).stream, request)
        rate = first.sample_rate if first is not None else await svc.stages.run("tts", tts.handle.sample_rate)
        pieces = audio_bytes(chunks, fmt, rate)
        headers = {"X-Sample-Rate": str(rate)}
        if body.stream_format == "sse":
            return StreamingResponse(speech_events(pieces), media_type="text/event-stream", headers=headers)
        return StreamingResponse(pieces, media_type=f"audio/{fmt}", headers=headers)
    audio = await svc.stages.run("tts", tts.handle.synthesize, request)
    if fmt == "pcm":
        return Response(pcm16(audio.samples), media_type="audio/pcm", headers={"X-Sample-Rate": str(audio.sample_rate)})
    buf = io.BytesIO()
    encoding = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}[fmt]
    sf.write(buf, audio.samples, audio.sample_rate, format=encoding[0], subtype=encoding[1])
    return Response(buf.getvalue(), media_type=f"audio/{'mpeg' if fmt == 'mp3' else fmt}")
