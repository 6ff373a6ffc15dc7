"""Live voice (issue 12): first audio before the LLM has finished, and /v1/realtime driven by the
official `openai` client (turns found by the streaming VAD, barge-in, a conversation kept per
connection), plus the realtime limits and API keys.

The app here answers at length (the tiny LLM is held to max_new_tokens by min_new_tokens), so a reply
is still being spoken when the next turn starts. Audio is sent at real-time pace, as a microphone
would; nothing waits on a sleep, every step waits for the server event it needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import get_args

import httpx
import numpy as np
import openai
import pytest
import websockets
from openai.types.realtime import RealtimeServerEvent
from ray import serve

from bench.loadtest.realtime import speech_clip
from gateway.ingress import Gateway
from gateway.realtime.audio import encode_pcm16
from graphs.app import build_app
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from mmserve.config.flows import FlowsArgs, VoiceChatArgs
from mmserve.config.gateway import RealtimeArgs
from mmserve.media import decode_audio
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_EN
from tests.test_flows import read_events

APP, LIMITS_APP, VAD_APP = "voice", "voice-limits", "voice-vad"
ASR, LLM, TTS = "paraformer", "qwen2.5-7b-instruct", "chattts"
LONG_REPLY = 1000  # tokens; several clauses, each spoken while the LLM goes on
CLAUSE_CODES = 800  # ChatTTS codes per clause, forced by min_new_token: a whole clause takes far longer to
# synthesize than the LLM takes to finish, its first streamed chunk far less
RATE = 24000
CHUNK_S = 0.04
SERVER_EVENTS = {get_args(c.model_fields["type"].annotation)[0]: c for c in get_args(get_args(RealtimeServerEvent)[0])}
KEY = "live-voice-key"


@pytest.fixture(scope="module")
def voice_app(ray_cluster):
    """ASR (with its streaming VAD), a long-winded LLM and ChatTTS, one replica each."""
    local = load_app_args(LOCAL_CONFIG)
    one_replica = DeploymentArgs(num_cpus=0.2, max_ongoing_requests=32, max_queued_requests=64)

    def model(name: str, **runner):
        entry = local.model(name)
        return entry.model_copy(update={"runner": entry.runner.model_copy(update=runner), "deployment": one_replica})

    args = AppArgs(models=[model(ASR), model(LLM, max_new_tokens=LONG_REPLY, min_new_tokens=LONG_REPLY, adapters={}),
                           model(TTS, max_new_token=CLAUSE_CODES, min_new_token=CLAUSE_CODES)],
                   flows=FlowsArgs(voice_chat=VoiceChatArgs(max_new_tokens=LONG_REPLY, temperature=0.0)),
                   gateway=local.gateway.without_partials())
    serve.run(build_app(args), name=APP, route_prefix="/" + APP)
    yield f"{ray_cluster}/{APP}", args
    serve.delete(APP)


def second_gateway(voice_app, name: str, **update) -> str:
    """Another gateway (one replica) with `update` to its settings, over the voice app's model replicas."""
    url, args = voice_app
    models = [{"name": m.name, "task": m.task, "family": m.family.name, "always_on": True, "default": True,
               "adapters": (), "handle": serve.get_deployment_handle(m.name, APP)} for m in args.models]
    gateway = args.gateway.model_copy(update={
        **update, "deployment": args.gateway.deployment.model_copy(update={"num_replicas": 1, "autoscaling": None})})
    serve.run(Gateway.options(name="gateway").bind(gateway, models, args.served_flows()), name=name,
              route_prefix="/" + name)
    return f"{url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="module")
def limits_url(voice_app):
    """A second gateway with tight realtime limits and an API key."""
    yield second_gateway(voice_app, LIMITS_APP, api_keys=[KEY], realtime=RealtimeArgs(
        max_sessions=1, idle_timeout_s=3, max_session_s=10, max_buffered_audio_s=1))
    serve.delete(LIMITS_APP)


@pytest.fixture(scope="module")
def coarse_listening_url(voice_app):
    """A gateway whose turns are found by the ASR model's VAD, listening in 1 s chunks (and following speech
    in 20 ms ones)."""
    yield second_gateway(voice_app, VAD_APP, realtime=RealtimeArgs(turn_detector="asr", vad_chunk_ms=20,
                                                                   vad_listen_chunk_ms=1000))
    serve.delete(VAD_APP)


def speech_pcm(rate: int = RATE) -> np.ndarray:
    return decode_audio(SPEECH_EN.read_bytes(), target_rate=rate).samples


def b64_pcm(samples: np.ndarray) -> str:
    return encode_pcm16(samples)


def test_first_audio_leaves_before_the_llm_has_finished(voice_app):
    """Server-side times: the first audio event of a long reply leaves while the LLM still generates."""
    url, _ = voice_app
    with httpx.stream("POST", url + "/v1/flows/voice-chat", timeout=300,
                      files={"file": ("q.wav", SPEECH_EN.read_bytes(), "audio/wav")}) as resp:
        assert resp.status_code == 200
        events = [e for _, e in read_events(resp) if isinstance(e, dict)]
    done = events[-1]
    assert done["type"] == "done", events[-1]
    timings = done["timings"]
    assert done["completion_tokens"] == LONG_REPLY
    assert len({e["index"] for e in events if e["type"] == "audio"}) >= 2, "the reply should span several clauses"
    assert timings["first_audio_ms"] < timings["llm_done_ms"], timings
    # a clause's audio arrives in several chunks, not as one clip
    assert max(e["chunk"] for e in events if e["type"] == "audio") >= 1


class Microphone:
    """Streams PCM16 at real-time pace: quiet noise, and the test speech whenever `say()` is called."""

    def __init__(self, connection):
        self.connection = connection
        self.queue: list[np.ndarray] = []
        self.speech = speech_pcm()
        self.noise = np.random.default_rng(0).normal(0, 0.001, int(RATE * CHUNK_S)).astype(np.float32)
        self.speech_sent_at: list[float] = []

    def say(self) -> None:
        step = int(RATE * CHUNK_S)
        self.queue.extend(self.speech[i:i + step] for i in range(0, len(self.speech), step))
        self.queue.append(None)  # marks the end of the speech

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            chunk = self.queue.pop(0) if self.queue else self.noise
            if chunk is None:
                self.speech_sent_at.append(time.monotonic())
                continue
            await self.connection.input_audio_buffer.append(audio=b64_pcm(chunk))
            next_at += len(chunk) / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing, as a microphone does


async def next_event(connection, kinds: set[str], seen: list[dict], timeout: float = 180) -> dict:
    """The next server event of one of `kinds` (checked against openai's types), collecting all in `seen`."""
    async with asyncio.timeout(timeout):
        while True:
            raw = json.loads(await connection.recv_bytes())
            SERVER_EVENTS[raw["type"]].model_validate(raw)  # openai's own type for it
            seen.append(raw)
            assert raw["type"] != "error", raw
            if raw["type"] in kinds:
                return raw


def test_realtime_conversation_with_barge_in(voice_app):
    url, _ = voice_app

    async def talk() -> list[dict]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        seen: list[dict] = []
        async with client.realtime.connect(model=LLM) as connection:
            created = await next_event(connection, {"session.created"}, seen)
            assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
            await connection.session.update(session={
                "type": "realtime", "instructions": "Answer briefly.", "max_output_tokens": 16,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}},
                          "output": {"voice": "female_1"}}})
            await next_event(connection, {"session.updated"}, seen)
            mic = Microphone(connection)
            sending = asyncio.create_task(mic.run())
            try:
                # turn 1: a short answer, completed
                mic.say()
                await next_event(connection, {"input_audio_buffer.speech_started"}, seen)
                await next_event(connection, {"input_audio_buffer.speech_stopped"}, seen)
                heard = await next_event(connection, {"conversation.item.input_audio_transcription.completed"}, seen)
                assert heard["transcript"].strip()
                first = await next_event(connection, {"response.done"}, seen)
                assert first["response"]["status"] == "completed", first
                # turn 2: a long answer, interrupted by speech while it is being spoken
                await connection.session.update(session={"type": "realtime", "max_output_tokens": LONG_REPLY})
                mic.say()
                await next_event(connection, {"conversation.item.input_audio_transcription.completed"}, seen)
                await next_event(connection, {"response.output_audio.delta"}, seen)
                await connection.session.update(session={"type": "realtime", "max_output_tokens": 16})
                mic.say()  # barge-in
                await next_event(connection, {"input_audio_buffer.speech_started"}, seen)
                cut = await next_event(connection, {"response.done"}, seen)
                assert cut["response"]["status"] == "cancelled", cut
                assert cut["response"]["status_details"]["reason"] == "turn_detected"
                # turn 3: answered with the whole conversation before it
                await next_event(connection, {"conversation.item.input_audio_transcription.completed"}, seen)
                last = await next_event(connection, {"response.done"}, seen)
                assert last["response"]["status"] == "completed", last
            finally:
                sending.cancel()
        return seen

    seen = asyncio.run(talk())
    responses = [e["response"] for e in seen if e["type"] == "response.done"]
    first, cut, last = responses
    # turn 3's prompt holds turns 1 and 2 (user and assistant) besides its own: over twice turn 1's
    assert last["usage"]["input_tokens"] > 2 * first["usage"]["input_tokens"], (first["usage"], last["usage"])
    kinds = [e["type"] for e in seen]
    for needed in ("response.created", "response.output_audio_transcript.delta", "response.output_audio.delta",
                   "input_audio_buffer.committed", "conversation.item.added"):
        assert needed in kinds, needed
    audio = b"".join(base64.b64decode(e["delta"]) for e in seen if e["type"] == "response.output_audio.delta")
    assert len(audio) > RATE  # more than half a second of PCM16 at 24 kHz
    # nothing of the cancelled response arrives after its response.done
    cut_at = kinds.index("response.done", kinds.index("response.done") + 1)
    assert not [e for e in seen[cut_at:] if e.get("response_id") == cut["id"]]


def test_realtime_manual_turns_text_replies_and_cancel(voice_app):
    """Turn detection off: the client commits, asks for a text reply, and cancels a long one."""
    url, _ = voice_app

    async def talk() -> list[dict]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        seen: list[dict] = []
        async with client.realtime.connect(model=LLM) as connection:
            await connection.session.update(session={
                "type": "realtime", "output_modalities": ["text"], "max_output_tokens": 8,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": None}}})
            updated = await next_event(connection, {"session.updated"}, seen)
            assert updated["session"]["audio"]["input"]["turn_detection"] is None
            await connection.input_audio_buffer.append(audio=b64_pcm(speech_pcm()))
            await connection.input_audio_buffer.commit()
            heard = await next_event(connection, {"conversation.item.input_audio_transcription.completed"}, seen)
            assert heard["transcript"].strip()
            await connection.response.create()
            done = await next_event(connection, {"response.done"}, seen)
            assert done["response"]["status"] == "completed"
            text = "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta")
            assert text and done["response"]["output"][0]["content"][0]["text"] == text
            # a long reply, cancelled by the client once it is under way
            await connection.response.create(response={"max_output_tokens": LONG_REPLY})
            await next_event(connection, {"response.output_text.delta"}, seen)
            await connection.response.cancel()
            cancelled = await next_event(connection, {"response.done"}, seen)
            assert cancelled["response"]["status"] == "cancelled"
            assert cancelled["response"]["status_details"]["reason"] == "client_cancelled"
            # turn detection back on: the VAD starts afresh, its times still count all the session's audio
            await connection.session.update(session={"type": "realtime", "audio": {"input": {
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "create_response": False}}}})
            await next_event(connection, {"session.updated"}, seen)
            quiet = np.zeros(RATE, np.float32)
            for samples in (quiet, speech_pcm(), quiet):
                await connection.input_audio_buffer.append(audio=b64_pcm(samples))
            started = await next_event(connection, {"input_audio_buffer.speech_started"}, seen)
            stopped = await next_event(connection, {"input_audio_buffer.speech_stopped"}, seen)
            # sent faster than real time, the turn's audio is still all there when the VAD catches up
            heard = await next_event(connection, {"conversation.item.input_audio_transcription.completed",
                                                  "conversation.item.input_audio_transcription.failed"}, seen)
            assert heard["type"].endswith("completed") and heard["transcript"].strip(), heard
            before = round(1000 * len(speech_pcm()) / RATE) + 1000  # the first turn's audio, then a second quiet
            assert before - 400 <= started["audio_start_ms"] < stopped["audio_end_ms"] <= before + 3200, (started,
                                                                                                      stopped)
        return seen

    asyncio.run(talk())


@pytest.mark.parametrize("event, param", [
    ({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {
        "type": "audio/pcm", "rate": 44100}}}}}, "session.audio.input.format.rate"),
    ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "audio"),
    ({"type": "input_audio_buffer.commit"}, "audio"),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": []}},
     "item.content"),
    ({"type": "response.dance"}, "type"),
])
def test_realtime_bad_events_get_errors_naming_the_field(voice_app, event, param):
    url, _ = voice_app

    async def send() -> dict:
        async with websockets.connect(url.replace("http", "ws") + "/v1/realtime") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(json.dumps({**event, "event_id": "mine"}))
            error = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            assert json.loads(await ws.recv())["type"] == "session.updated"  # the session goes on
            return error

    error = asyncio.run(send())
    SERVER_EVENTS["error"].model_validate(error)
    assert error["type"] == "error" and error["error"]["param"] == param, error


def test_realtime_limits_and_api_keys(limits_url):
    ws_url = limits_url.replace("http", "ws") + "/v1/realtime"

    async def run() -> None:
        # no key, a wrong key: refused with OpenAI's error shape
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["error"]["code"] == "invalid_api_key"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 1008
        # browsers: the key as a subprotocol
        async with websockets.connect(ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(await ws.recv())["type"] == "session.created"
            # one session per replica here: a second is refused while this one is open
            async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}) as other:
                assert json.loads(await other.recv())["error"]["code"] == "session_limit"
            # a quiet client is closed after the idle timeout
            error = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert error["error"]["code"] == "idle_timeout"
        # input audio held before a commit is capped
        async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"turn_detection": None}}}}))
            assert json.loads(await ws.recv())["type"] == "session.updated"
            second = b64_pcm(np.zeros(RATE // 2, np.float32))
            for _ in range(2):  # one second: accepted
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second, "event_id": "over"}))
            error = json.loads(await ws.recv())["error"]
            assert error["code"] == "payload_too_large" and error["param"] == "audio" and error["event_id"] == "over"
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # accepted again after the clear
            assert json.loads(await ws.recv())["type"] == "input_audio_buffer.committed"
        # a busy client is closed at the session's maximum length
        client = openai.AsyncOpenAI(base_url=limits_url + "/v1", api_key=KEY, max_retries=0)
        async with client.realtime.connect(model=LLM) as connection:
            started = time.monotonic()
            seen: list[dict] = []
            async with asyncio.timeout(60):
                while True:
                    try:
                        await connection.session.update(session={"type": "realtime"})
                    except websockets.ConnectionClosed:
                        pass  # the server has closed: what it sent before closing is still to be read
                    raw = json.loads(await connection.recv_bytes())
                    seen.append(raw)
                    if raw["type"] == "error":
                        break
            assert raw["error"]["code"] == "session_expired", seen[-3:]
            assert time.monotonic() - started >= 9.5
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await connection.recv_bytes()
            assert closed.value.rcvd.reason == "session_expired"

    asyncio.run(run())


def test_once_speech_starts_the_vad_follows_it_in_small_chunks(coarse_listening_url):
    """The VAD listens in large chunks (cheap: most of a session is silence) but follows speech in
    small ones, so the end of a turn is heard as soon as enough silence has come, not once a whole
    listening chunk has. Here the silence after the speech (400 ms) is less than one listening chunk
    (1 s): fed to the VAD in listening chunks, it would wait for more audio and never end the turn."""
    speech = np.frombuffer(speech_clip("en").pcm, "<i2").astype(np.float32) / 32768  # silence trimmed, 24 kHz

    async def run() -> tuple[dict, dict]:
        client = openai.AsyncOpenAI(base_url=coarse_listening_url + "/v1", api_key="unused", max_retries=0)
        seen: list[dict] = []
        async with client.realtime.connect(model=LLM) as connection:
            await connection.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": {
                "type": "server_vad", "silence_duration_ms": 200, "create_response": False}}}})
            await next_event(connection, {"session.updated"}, seen)
            await connection.input_audio_buffer.append(audio=b64_pcm(np.concatenate([np.zeros(RATE), speech])))
            started = await next_event(connection, {"input_audio_buffer.speech_started"}, seen)
            await connection.input_audio_buffer.append(audio=b64_pcm(np.zeros(int(0.4 * RATE), np.float32)))
            stopped = await next_event(connection, {"input_audio_buffer.speech_stopped"}, seen, timeout=60)
            return started, stopped

    started, stopped = asyncio.run(run())
    assert 600 <= started["audio_start_ms"] < stopped["audio_end_ms"] <= 1000 + 1000 * len(speech) / RATE + 400


def test_the_proxy_guard_lifts_the_request_timeout_for_websockets():
    """Serve's proxy applies http_options.request_timeout_s to a whole WebSocket; gateway.proxy_guard
    (loaded into the proxy) turns it off for them, through Serve's own per-request header. Checked by
    hand on a cluster with request_timeout_s 5: a session was cut at 5.0 s without the guard and open
    after 12 s with it."""
    from ray.serve._private.http_util import parse_request_timeout_header

    from gateway.proxy_guard import untimed

    scope = {"type": "websocket", "headers": [(b"x-request-timeout-seconds", b"99"), (b"host", b"x")]}
    headers = dict(untimed(scope)["headers"])
    assert parse_request_timeout_header(headers, 5.0) is None  # no timeout
    assert parse_request_timeout_header(dict(scope["headers"]), 5.0) == 99.0  # the client's own was replaced
