"""POST /v1/audio/transcriptions: multipart audio in; json, text, srt, vtt or verbose_json out."""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import PlainTextResponse

from gateway.services import Services, services
from gateway.uploads import read_upload
from mmserve import subtitles
from mmserve.media import decode_audio
from mmserve.protocol.asr import prompt_hotwords

router = APIRouter(prefix="/v1")


@router.post("/audio/transcriptions")
async def transcriptions(
    file: UploadFile = File(...),
    model: str | None = Form(None),
    language: str | None = Form(None, description="accepted and echoed; Paraformer detects zh/en itself, "
                                "Whisper uses its runner.language"),
    prompt: str | None = Form(None, description="hotwords, separated by commas or spaces"),
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = Form("json"),
    temperature: float | None = Form(None, description="accepted for compatibility; decoding is greedy"),
    svc: Services = Depends(services),
):
    asr = svc.model("asr", model)
    audio = decode_audio(await read_upload(file, svc.limits, "file"), max_seconds=svc.limits.max_audio_s)
    transcript = await svc.stages.run("asr", asr.handle.transcribe, audio.samples, prompt_hotwords(prompt))
    text, duration = transcript.text, audio.duration_s
    if response_format == "text":
        return PlainTextResponse(text)
    if transcript.segments is not None:  # the recognizer's own segments (Whisper)
        segs = [subtitles.Segment(s.start_s, s.end_s, s.text) for s in transcript.segments]
    else:
        segs = subtitles.segments(text, transcript.timestamps, duration)
    if response_format == "srt":
        return PlainTextResponse(subtitles.to_srt(segs))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.to_vtt(segs), media_type="text/vtt")
    if response_format == "json":
        return {"text": text}
    return {
        "task": "transcribe", "language": language or transcript.language or "zh", "duration": round(duration, 3),
        "text": text,
        "segments": [{"id": i, "start": s.start_s, "end": s.end_s, "text": s.text} for i, s in enumerate(segs)],
        "words": [{"word": w.word, "start": w.start_s, "end": w.end_s} for w in transcript.words]
        if transcript.words is not None else subtitles.words_with_times(text, transcript.timestamps),
    }
