"""One entry per mmserve route or flow: how to build its request and what to measure in its reply.

Each `send` performs one request with a `requests` session and returns an Outcome: the HTTP
status, whether the body has the expected structure, and the per-request figures of its
modality (audio seconds, first audio chunk, first token, token count, images). Latency itself is
timed by the caller around `send`, so every route is timed the same way.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

import requests
from websockets.exceptions import WebSocketException

from bench.loadtest.payloads import Payloads, wav_seconds
from bench.loadtest.realtime import TurnFailed, one_turn, speech_clip

PCM_RATE = 24000  # /v1/audio/speech streams 16-bit mono PCM at 24 kHz
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWITCHING_PROTOCOLS = 101  # the status of a WebSocket session that opened


@dataclass
class Options:
    """Request knobs shared by the routes (CLI flags)."""

    timeout_s: float = 300.0
    api_key: str | None = None
    image_size: str = "128x128"
    steps: int | None = None
    n: int = 1
    max_tokens: int = 32
    music_seconds: float = 2.0
    rewrite: bool | None = None
    voice: str | None = None
    realtime_silence_ms: int = 500  # the session's server_vad silence_duration_ms
    realtime_chunk_ms: int = 40  # input audio per input_audio_buffer.append, sent at real-time pace
    realtime_clip: str = "en"  # the recording spoken (bench/loadtest/realtime.py:CLIPS)
    realtime_model: str | None = None  # ?model= (the LLM); None: the voice-chat flow's


@dataclass
class Outcome:
    status: int  # HTTP status; 0 when no response arrived
    error: str | None = None  # None: a 2xx with a well-formed body
    first_s: float | None = None  # perf_counter() when the first useful chunk arrived (streams)
    metrics: dict[str, float] = field(default_factory=dict)


class BadBody(Exception):
    """A 2xx whose body lacks what the API promises."""


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    send: Callable[["Call"], Outcome]
    streaming: bool = False


@dataclass
class Call:
    """Everything one request needs; `i` picks the payload (each route cycles its own list)."""

    session: requests.Session
    base_url: str
    payloads: Payloads
    options: Options
    i: int

    def pick(self, items):
        return items[self.i % len(items)]

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        return self.session.request(method, self.base_url + path, headers=headers,
                                    timeout=self.options.timeout_s, **kwargs)


def finish(resp: requests.Response, check: Callable[[requests.Response], dict[str, float]] | None = None,
           first_s: float | None = None) -> Outcome:
    """Outcome of a whole (non-streamed) reply: status, body check, figures."""
    if not resp.ok:
        return Outcome(resp.status_code, error=error_message(resp), first_s=first_s)
    try:
        metrics = check(resp) if check else {}
    except (BadBody, ValueError, KeyError, TypeError, IndexError) as exc:
        return Outcome(resp.status_code, error=f"bad body: {type(exc).__name__}: {exc}"[:300], first_s=first_s)
    return Outcome(resp.status_code, first_s=first_s, metrics=metrics)


def error_message(resp: requests.Response) -> str:
    """The error's message, tagged when a 503 says when to retry (what clients back off on)."""
    retry = f" [Retry-After: {resp.headers['retry-after']}]" if "retry-after" in resp.headers else ""
    try:
        return str(resp.json().get("error", {}).get("message", resp.text))[:300] + retry
    except ValueError:
        return resp.text[:300] + retry


def require(condition: bool, message: str) -> None:
    if not condition:
        raise BadBody(message)


def sse_events(resp: requests.Response) -> Iterator[tuple[float, dict | str]]:
    """(arrival time, parsed `data:` payload) for each server-sent event, as it arrives."""
    buffer = b""
    for chunk in resp.iter_content(chunk_size=None):  # None: yield each chunk as it arrives
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip().decode()
            now = time.perf_counter()
            yield now, (data if data == "[DONE]" else json.loads(data))


def check_pngs(items: list[dict]) -> int:
    require(len(items) > 0, "no images")
    for item in items:
        require(base64.b64decode(item["b64_json"])[:8] == PNG_MAGIC, "image is not a PNG")
    return len(items)


def b64_wav_seconds(b64: str) -> float:
    seconds = wav_seconds(base64.b64decode(b64))
    require(seconds > 0, "b64_wav is not audio")
    return seconds


def spoken_reply_seconds(body: dict) -> float:
    """Seconds of speech in a describe-aloud / spoken-question reply.

    The gateway answers `"audio": {"b64_wav", "duration_s", ...}` (b64_wav is null when the text
    had nothing speakable); the older `audio_b64_wav` field is read too.
    """
    audio = body.get("audio")
    if isinstance(audio, dict):
        return b64_wav_seconds(audio["b64_wav"]) if audio.get("b64_wav") else 0.0
    return b64_wav_seconds(body["audio_b64_wav"])


def audio_file(call: Call) -> tuple[dict, float]:
    clip = call.pick(call.payloads.clips)
    return {"file": (f"{clip.name}.wav", clip.wav, "audio/wav")}, clip.seconds


def image_file(call: Call) -> dict:
    return {"image": ("image.png", call.pick(call.payloads.images), "image/png")}


# ---- routes ---------------------------------------------------------------------------------

def send_healthz(call: Call) -> Outcome:
    def check(r):
        require(r.json().get("status") == "ok", "status is not ok")
        return {}

    return finish(call.request("GET", "/healthz"), check)


def send_models(call: Call) -> Outcome:
    return finish(call.request("GET", "/v1/models"), lambda r: {"models": float(len(r.json()["data"]))})


def send_transcribe(call: Call) -> Outcome:
    files, seconds = audio_file(call)
    resp = call.request("POST", "/v1/audio/transcriptions", files=files, data={"response_format": "json"})

    def check(r):
        require(isinstance(r.json()["text"], str), "text is not a string")
        return {"audio_s": seconds}

    return finish(resp, check)


def send_speech(call: Call) -> Outcome:
    body = {"input": call.pick(call.payloads.speech_text), "response_format": "pcm", "stream": True}
    if call.options.voice:
        body["voice"] = call.options.voice
    with call.request("POST", "/v1/audio/speech", json=body, stream=True) as resp:
        if not resp.ok:
            return Outcome(resp.status_code, error=error_message(resp))
        first, size = None, 0
        for chunk in resp.iter_content(chunk_size=None):
            if chunk and first is None:
                first = time.perf_counter()
            size += len(chunk)
    if size == 0:
        return Outcome(resp.status_code, error="bad body: no audio")
    return Outcome(resp.status_code, first_s=first, metrics={"audio_s": size / 2 / PCM_RATE})


def send_speech_whole(call: Call) -> Outcome:
    """Whole-clip synthesis (`stream: false`): the TTS path that @serve.batch batches."""
    body = {"input": call.pick(call.payloads.speech_text), "response_format": "pcm", "stream": False}
    if call.options.voice:
        body["voice"] = call.options.voice
    resp = call.request("POST", "/v1/audio/speech", json=body)
    return finish(resp, lambda r: {"audio_s": len(r.content) / 2 / PCM_RATE})


def image_body(call: Call, prompt: str) -> dict:
    body = {"prompt": prompt, "n": call.options.n, "size": call.options.image_size,
            "response_format": "b64_json", "seed": call.i}
    if call.options.steps:
        body["steps"] = call.options.steps
    return body


def send_images(call: Call) -> Outcome:
    resp = call.request("POST", "/v1/images/generations", json=image_body(call, call.pick(call.payloads.prompts)))
    return finish(resp, lambda r: {"images": float(check_pngs(r.json()["data"]))})


def chat_stream(call: Call, content) -> Outcome:
    """Streamed chat: time to first token, token count and decode rate from the SSE chunks."""
    body = {"messages": [{"role": "user", "content": content}], "stream": True,
            "max_tokens": call.options.max_tokens, "stream_options": {"include_usage": True}}
    with call.request("POST", "/v1/chat/completions", json=body, stream=True) as resp:
        if not resp.ok:
            return Outcome(resp.status_code, error=error_message(resp))
        first = last = None
        deltas, usage, done = 0, None, False
        try:
            for now, event in sse_events(resp):
                if event == "[DONE]":
                    done = True
                    break
                usage = event.get("usage") or usage
                for choice in event.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        deltas += 1
                        first = first or now
                        last = now
        except ValueError as exc:
            return Outcome(resp.status_code, error=f"bad body: {exc}"[:300])
    if not done:
        return Outcome(resp.status_code, error="bad body: stream ended without [DONE]")
    tokens = (usage or {}).get("completion_tokens") or deltas
    metrics = {"tokens": float(tokens)}
    if first is not None and last is not None and last > first and tokens > 1:
        metrics["decode_tokens_per_s"] = (tokens - 1) / (last - first)
    return Outcome(resp.status_code, first_s=first, metrics=metrics)


def send_chat(call: Call) -> Outcome:
    return chat_stream(call, call.pick(call.payloads.prompts))


def send_chat_vlm(call: Call) -> Outcome:
    content = [{"type": "text", "text": call.pick(call.payloads.questions)},
               {"type": "image_url", "image_url": {"url": call.pick(call.payloads.image_urls)}}]
    return chat_stream(call, content)


def send_music(call: Call) -> Outcome:
    body = {"prompt": call.pick(call.payloads.prompts), "duration_s": call.options.music_seconds, "seed": call.i}
    if call.options.steps:
        body["steps"] = call.options.steps
    resp = call.request("POST", "/v1/audio/music", json=body)

    def check(r):
        seconds = wav_seconds(r.content)
        require(seconds > 0, "reply is not audio")
        return {"audio_s": seconds}

    return finish(resp, check)


def send_speech_to_image(call: Call) -> Outcome:
    files, seconds = audio_file(call)
    width, height = call.options.image_size.split("x")
    form = {"width": width, "height": height, "seed": str(call.i), "n": str(call.options.n)}
    if call.options.steps:
        form["steps"] = str(call.options.steps)
    if call.options.rewrite is not None:
        form["rewrite"] = str(call.options.rewrite).lower()
    resp = call.request("POST", "/v1/flows/speech-to-image", files=files, data=form)

    def check(r):
        body = r.json()
        require(isinstance(body["transcript"], str), "no transcript")
        metrics = {"images": float(check_pngs(body["images"])), "audio_s": seconds}
        metrics.update({f"server_{k}": float(v) for k, v in body["timings"].items()})
        return metrics

    return finish(resp, check)


def send_describe_aloud(call: Call) -> Outcome:
    form = {"question": call.pick(call.payloads.questions)}
    if call.options.voice:
        form["voice"] = call.options.voice
    resp = call.request("POST", "/v1/flows/describe-aloud", files=image_file(call), data=form)
    return finish(resp, spoken_reply("description"))


def send_spoken_question(call: Call) -> Outcome:
    files, _ = audio_file(call)
    resp = call.request("POST", "/v1/flows/spoken-question", files={**files, **image_file(call)})
    return finish(resp, spoken_reply("answer"))


def spoken_reply(text_field: str) -> Callable[[requests.Response], dict]:
    """Check of a describe-aloud / spoken-question reply: its text is a string; figure: seconds spoken."""
    def check(resp: requests.Response) -> dict:
        body = resp.json()
        require(isinstance(body[text_field], str), f"no {text_field}")
        return {"audio_s": spoken_reply_seconds(body)}

    return check


def send_voice_chat(call: Call) -> Outcome:
    """SSE: transcript, text deltas, audio clauses, done; time to the first audio event."""
    files, seconds = audio_file(call)
    with call.request("POST", "/v1/flows/voice-chat", files=files, data={"stream": "true"}, stream=True) as resp:
        if not resp.ok:
            return Outcome(resp.status_code, error=error_message(resp))
        first_audio, audio_s, timings, done = None, 0.0, {}, False
        try:
            for now, event in sse_events(resp):
                if event == "[DONE]":
                    done = True
                    break
                if event.get("type") == "audio":
                    first_audio = first_audio or now
                    audio_s += b64_wav_seconds(event["b64_wav"])
                elif event.get("type") == "done":
                    timings = event.get("timings") or {}
                elif event.get("type") == "error":
                    return Outcome(resp.status_code, error=f"stream error: {event}"[:300])
        except (ValueError, BadBody) as exc:
            return Outcome(resp.status_code, error=f"bad body: {exc}"[:300])
    if not done or first_audio is None:
        return Outcome(resp.status_code, error="bad body: stream ended without audio and [DONE]")
    metrics = {"audio_s": audio_s, "input_audio_s": seconds}
    metrics.update({f"server_{k}": float(v) for k, v in timings.items() if isinstance(v, (int, float))})
    return Outcome(resp.status_code, first_s=first_audio, metrics=metrics)


def send_realtime(call: Call, transcription: bool = False) -> Outcome:
    """One spoken turn over /v1/realtime; figures in ms after the end of speech (realtime.py)."""
    o = call.options
    try:
        figures = one_turn(call.base_url, speech_clip(o.realtime_clip), silence_ms=o.realtime_silence_ms,
                           chunk_ms=o.realtime_chunk_ms, timeout_s=o.timeout_s, api_key=o.api_key,
                           model=o.realtime_model, voice=o.voice, transcription=transcription)
    except TurnFailed as exc:
        return Outcome(exc.status, error=str(exc))
    except (TimeoutError, OSError, WebSocketException, ValueError) as exc:  # no session, or a cut one
        return Outcome(0, error=f"{type(exc).__name__}: {exc}"[:300])
    return Outcome(SWITCHING_PROTOCOLS, metrics=figures)


ROUTES: dict[str, Route] = {r.name: r for r in [
    Route("healthz", "GET", "/healthz", send_healthz),
    Route("models", "GET", "/v1/models", send_models),
    Route("transcribe", "POST", "/v1/audio/transcriptions", send_transcribe),
    Route("speech", "POST", "/v1/audio/speech", send_speech, streaming=True),
    Route("speech-whole", "POST", "/v1/audio/speech", send_speech_whole),
    Route("images", "POST", "/v1/images/generations", send_images),
    Route("chat", "POST", "/v1/chat/completions", send_chat, streaming=True),
    Route("chat-vlm", "POST", "/v1/chat/completions", send_chat_vlm, streaming=True),
    Route("music", "POST", "/v1/audio/music", send_music),
    Route("speech-to-image", "POST", "/v1/flows/speech-to-image", send_speech_to_image),
    Route("describe-aloud", "POST", "/v1/flows/describe-aloud", send_describe_aloud),
    Route("spoken-question", "POST", "/v1/flows/spoken-question", send_spoken_question),
    Route("voice-chat", "POST", "/v1/flows/voice-chat", send_voice_chat, streaming=True),
    # a WebSocket: /openapi.json does not list it, so `--routes auto` leaves it out; name it
    Route("realtime", "GET", "/v1/realtime", send_realtime, streaming=True),
    Route("realtime-transcription", "GET", "/v1/realtime", partial(send_realtime, transcription=True), streaming=True),
]}


def available(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """Routes the gateway serves now, read from its OpenAPI document (FastAPI's /openapi.json)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    resp = requests.get(base_url + "/openapi.json", headers=headers, timeout=timeout_s)
    resp.raise_for_status()
    paths = resp.json().get("paths", {})
    return [name for name, route in ROUTES.items() if route.method.lower() in paths.get(route.path, {})]


def parse_mix(spec: str, base_url: str, api_key: str | None = None) -> dict[str, int]:
    """`auto`, `all` or `name[:weight],...` -> {route name: weight}."""
    if spec in ("auto", "all"):
        names = available(base_url, api_key) if spec == "auto" else list(ROUTES)
        if not names:
            raise ValueError(f"{base_url}/openapi.json lists none of the known routes")
        return {name: 1 for name in names}
    mix: dict[str, int] = {}
    for item in spec.split(","):
        name, _, weight = item.strip().partition(":")
        if name not in ROUTES:
            raise ValueError(f"unknown route {name!r}; known: {', '.join(ROUTES)}")
        mix[name] = int(weight or 1)
        if mix[name] < 1:
            raise ValueError(f"route weight must be >= 1: {item!r}")
    return mix
