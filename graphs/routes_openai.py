"""OpenAI-compatible routes, one per modality, so switching to mmserve is a base-URL change."""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import io
import json
import math
import struct
import time
import uuid
from typing import Literal

import numpy as np
import soundfile as sf
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from graphs.services import Services, services
from graphs.stages import stage_error
from graphs.uploads import read_upload
from mmserve import subtitles
from mmserve.errors import InvalidInput
from mmserve.media import b64encode, decode_audio, decode_data_url, decode_image
from mmserve.runners.image import ImageRequest
from mmserve.runners.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.runners.music import MusicRequest
from mmserve.runners.tts import SpeechRequest
from mmserve.runners.vlm import VlmRequest

router = APIRouter(prefix="/v1")


class Body(BaseModel):
    """OpenAI clients send fields we do not use (user, quality, ...): accept and ignore them."""

    model_config = ConfigDict(extra="ignore")


def sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def chain(head: list, tail):
    """Items already fetched, then the rest of an async iterator."""
    for item in head:
        yield item
    async for item in tail:
        yield item


async def stream_or_error(first, rest, stage: str):
    """SSE text: the first chunk (already fetched, so early errors were plain 4xx), then the rest;
    a failure mid-stream becomes a final error event instead of a cut connection."""
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except Exception as exc:
        yield sse(stage_error(stage, exc).to_dict())
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- models
@router.get("/models")
async def list_models(svc: Services = Depends(services)) -> dict:
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "mmserve", "task": m.task}
        for m in svc.models.values()]}


# ---------------------------------------------------------------- transcription
@router.post("/audio/transcriptions")
async def transcriptions(
    file: UploadFile = File(...),
    model: str | None = Form(None),
    language: str | None = Form(None, description="accepted and echoed; Paraformer detects zh/en itself"),
    prompt: str | None = Form(None, description="hotwords, separated by commas or spaces"),
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = Form("json"),
    temperature: float | None = Form(None, description="accepted for compatibility; decoding is greedy"),
    svc: Services = Depends(services),
):
    asr = svc.model("asr", model)
    audio = decode_audio(await read_upload(file, svc.limits, "file"), max_seconds=svc.limits.max_audio_s)
    hotwords = [w for w in (prompt or "").replace(",", " ").split() if w] or None
    try:
        transcript = await asr.handle.transcribe.remote(audio.samples, hotwords)
    except Exception as exc:
        raise stage_error("asr", exc) from None
    text, duration = transcript.text, audio.duration_s
    if response_format == "text":
        return PlainTextResponse(text)
    segs = subtitles.segments(text, transcript.timestamps, duration)
    if response_format == "srt":
        return PlainTextResponse(subtitles.to_srt(segs))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.to_vtt(segs), media_type="text/vtt")
    if response_format == "json":
        return {"text": text}
    return {
        "task": "transcribe", "language": language or "zh", "duration": round(duration, 3), "text": text,
        "segments": [{"id": i, "start": s.start_s, "end": s.end_s, "text": s.text} for i, s in enumerate(segs)],
        "words": subtitles.words_with_times(text, transcript.timestamps),
    }


# ---------------------------------------------------------------- speech
class SpeechBody(Body):
    model: str | None = None
    input: str
    voice: str | None = None
    response_format: Literal["wav", "pcm", "mp3", "flac"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream: bool = Field(True, description="wav and pcm leave chunk by chunk as they are synthesized")
    seed: int | None = None
    speaker_seed: int | None = Field(None, description="a voice by seed instead of a named voice")
    speaker_embedding: str | None = Field(None, description="ChatTTS's encoded speaker embedding")


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
    rate = 24000
    if body.stream and body.response_format in ("wav", "pcm"):
        chunks = tts.handle.options(stream=True).stream.remote(request)
        try:
            first = await chunks.__anext__()  # validation errors surface here, as a 4xx
        except StopAsyncIteration:
            first = np.zeros(0, dtype=np.float32)
        except Exception as exc:
            raise stage_error("tts", exc) from None

        async def body_bytes():
            yield (streaming_wav_header(rate) if body.response_format == "wav" else b"") + pcm16(first)
            async for chunk in chunks:
                yield pcm16(chunk)

        media = "audio/wav" if body.response_format == "wav" else "audio/pcm"
        return StreamingResponse(body_bytes(), media_type=media, headers={"X-Sample-Rate": str(rate)})
    try:
        samples = await tts.handle.synthesize.remote(request)
    except Exception as exc:
        raise stage_error("tts", exc) from None
    if body.response_format == "pcm":
        return Response(pcm16(samples), media_type="audio/pcm", headers={"X-Sample-Rate": str(rate)})
    buf = io.BytesIO()
    fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}[body.response_format]
    sf.write(buf, samples, rate, format=fmt[0], subtype=fmt[1])
    return Response(buf.getvalue(), media_type=f"audio/{'mpeg' if body.response_format == 'mp3' else body.response_format}")


# ---------------------------------------------------------------- images
class ImageBody(Body):
    model: str | None = None
    prompt: str
    n: int = 1
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. 1024x1024")
    response_format: Literal["b64_json", "url"] = "b64_json"
    negative_prompt: str = ""
    steps: int | None = Field(None, alias="num_inference_steps")
    guidance_scale: float | None = None
    seed: int | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def parse_size(size: str | None, default_w: int, default_h: int) -> tuple[int, int]:
    if size is None or size == "auto":
        return default_w, default_h
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InvalidInput(f"size must look like 1024x1024, got {size!r}", field="size") from None
    return width, height


@router.post("/images/generations")
async def images(body: ImageBody, svc: Services = Depends(services)) -> dict:
    image = svc.model("image", body.model)
    if body.response_format == "url":
        raise InvalidInput("response_format 'url' is not supported (images are not stored); use b64_json",
                           field="response_format")
    limits = svc.limits
    prompt = limits.check_prompt(body.prompt, "prompt")
    negative = limits.check_prompt(body.negative_prompt, "negative_prompt", required=False)
    width, height = parse_size(body.size, svc.image_defaults.width, svc.image_defaults.height)
    try:
        limits.check_image_options(width=width, height=height, steps=body.steps, guidance=body.guidance_scale, n=body.n)
    except InvalidInput as exc:
        if exc.field in ("width", "height"):
            exc.field = "size"
        raise
    request = ImageRequest(prompt=prompt, negative_prompt=negative, width=width, height=height,
                           num_inference_steps=body.steps, guidance_scale=body.guidance_scale, seed=body.seed,
                           num_images=body.n)
    try:
        pngs = await image.handle.generate.remote(request)
    except Exception as exc:
        raise stage_error("image", exc) from None
    return {"created": int(time.time()), "data": [{"b64_json": b64encode(png)} for png in pngs]}


# ---------------------------------------------------------------- music
class MusicBody(MusicRequest):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None


@router.post("/audio/music")
async def music(body: MusicBody, svc: Services = Depends(services)) -> Response:
    served = svc.model("music", body.model)
    prompt = svc.limits.check_prompt(body.prompt, "prompt")
    request = MusicRequest(**body.model_dump(exclude={"model"}) | {"prompt": prompt})
    try:
        wav = await served.handle.generate_wav.remote(request)
    except Exception as exc:
        raise stage_error("music", exc) from None
    return Response(wav, media_type="audio/wav")


# ---------------------------------------------------------------- chat
class ImageUrl(Body):
    url: str


class ContentPart(Body):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class MessageIn(Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content if p.type == "text")

    def image_urls(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url]


class ChatBody(Body):
    model: str | None = None
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: dict | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None


def chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(cid: str, model: str, text: str, finish: str, usage: dict | None) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage}


def chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    payload = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        payload["usage"], payload["choices"] = usage, []
    return sse(payload)


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@router.post("/chat/completions")
async def chat_completions(body: ChatBody, svc: Services = Depends(services)):
    urls = [url for m in body.messages for url in m.image_urls()]
    task = svc.task_of(body.model) if body.model else ("vlm" if urls else "llm")
    if task not in ("llm", "vlm"):
        svc.model("llm", body.model)  # raises the 404 naming the model
    served = svc.model(task, body.model)
    if urls and task == "llm":
        raise InvalidInput(f"model {served.name!r} does not accept images", field="messages")
    max_new = body.max_completion_tokens or body.max_tokens
    cid = chat_id()
    if task == "vlm":
        return await vlm_chat(svc, served, body, urls, max_new, cid)
    for i, message in enumerate(body.messages):
        svc.limits.check_prompt(message.text(), f"messages[{i}].content", required=False)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    messages = [ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
                for m in body.messages]
    params = GenerationParams(max_new_tokens=max_new, temperature=body.temperature, top_p=body.top_p,
                              seed=body.seed, stop=stop)
    if not body.stream:
        try:
            result = await served.handle.chat.remote(messages, params)
        except Exception as exc:
            raise stage_error("llm", exc) from None
        usage = usage_of(result.prompt_tokens, result.completion_tokens)
        return completion(cid, served.name, result.text, result.finish_reason, usage)

    items = served.handle.options(stream=True).stream.remote(messages, params)
    try:
        first = await items.__anext__()
    except Exception as exc:
        raise stage_error("llm", exc) from None
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    async def rest():
        result = None
        async for item in chain([first], items):
            if isinstance(item, ChatResult):
                result = item
                continue
            yield chunk(cid, served.name, {"content": item})
        yield chunk(cid, served.name, {}, result.finish_reason if result else "stop")
        if include_usage and result:
            yield chunk(cid, served.name, {}, usage=usage_of(result.prompt_tokens, result.completion_tokens))

    opening = chunk(cid, served.name, {"role": "assistant", "content": ""})
    return StreamingResponse(stream_or_error(opening, rest(), "llm"), media_type="text/event-stream")


async def vlm_chat(svc: Services, served, body: ChatBody, urls: list[str], max_new: int | None, cid: str):
    limits = svc.limits
    if len(urls) > limits.max_images_per_request:
        raise InvalidInput(f"at most {limits.max_images_per_request} images per request", field="messages")
    images = [decode_image(decode_data_url(url, field="image_url"), max_pixels=limits.max_image_pixels,
                           field="image_url") for url in urls]
    user_turns = [m for m in body.messages if m.role == "user"]
    question = limits.check_prompt(user_turns[-1].text() if user_turns else "", "messages")
    request = VlmRequest(question=question, images=images, max_new_tokens=max_new,
                         temperature=body.temperature, top_p=body.top_p, seed=body.seed)
    if not body.stream:
        try:
            result = await served.handle.answer.remote(request)
        except Exception as exc:
            raise stage_error("vlm", exc) from None
        return completion(cid, served.name, result.text, result.finish_reason,
                          usage_of(result.prompt_tokens, result.completion_tokens))
    deltas = served.handle.options(stream=True).stream.remote(request)
    try:
        first = await deltas.__anext__()
    except StopAsyncIteration:
        first = ""
    except Exception as exc:
        raise stage_error("vlm", exc) from None

    async def rest():
        async for delta in chain([first], deltas):
            yield chunk(cid, served.name, {"content": delta})
        yield chunk(cid, served.name, {}, "stop")

    opening = chunk(cid, served.name, {"role": "assistant", "content": ""})
    return StreamingResponse(stream_or_error(opening, rest(), "vlm"), media_type="text/event-stream")
