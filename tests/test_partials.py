"""Two-pass live transcription (issue 20): partial transcripts from the streaming Paraformer while the
user speaks, the final text from the offline Paraformer, through a realtime transcription session.

The tests rebuild the turn's exact 16 kHz audio as the session did (the same resampler and Silero VAD
over the same chunks), then have each model transcribe exactly that audio through the plain
transcription route (the same replicas, so the same float arithmetic): the deltas must join to the
streaming model's text and the final transcript must be the offline model's.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets
from ray import serve

from gateway.realtime.audio import Resampler, decode_pcm16, encode_pcm16
from gateway.realtime.vad import TurnDetector, silero_model
from graphs.app import build_app
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from mmserve.media import decode_audio
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_ZH, wait_until
from tests.test_faults import replica_pids
from tests.test_live_voice import SERVER_EVENTS

RATE, ASR_RATE = 24000, 16000
APPEND = RATE // 10  # 100 ms per append, sent at real time
DETECTION = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def microphone() -> list[str]:
    """Half a second of quiet, the Chinese recording, a second of quiet: 100 ms appends of base64 PCM16
    at 24 kHz."""
    speech = decode_audio(SPEECH_ZH.read_bytes(), target_rate=RATE).samples
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), speech, np.zeros(RATE, np.float32)])
    return [encode_pcm16(audio[i: i + APPEND]) for i in range(0, len(audio), APPEND)]


def turn_audio(appends: list[str]) -> tuple[np.ndarray, int, int]:
    """The first turn's 16 kHz audio and its (start, end) samples, found as the session finds them."""
    resample, detector = Resampler(RATE, ASR_RATE), TurnDetector(silero_model(), DETECTION["threshold"],
                                                                 DETECTION["prefix_padding_ms"],
                                                                 DETECTION["silence_duration_ms"])
    stream, edges = [], {}
    for chunk in appends:
        stream.append(resample(decode_pcm16(chunk)))
        for kind, sample in detector.feed(stream[-1]):
            edges.setdefault(kind, sample)
    audio = np.concatenate(stream)
    return audio[edges["start"]: edges["stop"]], edges["start"], edges["stop"]


async def talk(url: str, appends: list[str], on_first_delta=None) -> list[dict]:
    """A transcription session fed `appends` at real time; every server event until the turn's final
    text, each checked against openai's class for it."""
    seen: list[dict] = []

    async def receive_all(ws) -> None:
        while True:
            event = json.loads(await ws.recv())
            SERVER_EVENTS[event["type"]].model_validate(event)
            seen.append(event)
            if event["type"] == DELTA and on_first_delta is not None and sum(e["type"] == DELTA for e in seen) == 1:
                on_first_delta()
            if event["type"] in (COMPLETED, "error"):
                return

    async with websockets.connect(url.replace("http", "ws") + "/v1/realtime?intent=transcription") as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": DETECTION}}}}))
        receiver = asyncio.create_task(receive_all(ws))
        for chunk in appends:
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await asyncio.sleep(APPEND / RATE)  # a microphone's pace, not a wait for the server
        async with asyncio.timeout(180):
            await receiver
    return seen


def transcribed(url: str, audio: np.ndarray, model: str) -> str:
    """The model's text for exactly these samples (a float WAV: no PCM16 rounding), through the plain
    transcription route, so on the same replica numerics as the session's calls."""
    buf = io.BytesIO()
    sf.write(buf, audio, ASR_RATE, format="WAV", subtype="FLOAT")
    resp = httpx.post(url + "/v1/audio/transcriptions", data={"model": model}, timeout=120,
                      files={"file": ("turn.wav", buf.getvalue(), "audio/wav")})
    assert resp.status_code == 200, resp.text
    return resp.json()["text"]


def check_two_pass(url: str, seen: list[dict], chunks: list[str]) -> None:
    kinds = [e["type"] for e in seen]
    assert "error" not in kinds, [e for e in seen if e["type"] == "error"]
    started = next(e for e in seen if e["type"] == "input_audio_buffer.speech_started")
    stopped = kinds.index("input_audio_buffer.speech_stopped")
    deltas = [e for e in seen if e["type"] == DELTA]
    assert deltas and kinds.index(DELTA) < stopped, kinds  # partials while the user still speaks
    assert {d["item_id"] for d in deltas} == {started["item_id"]}
    assert kinds.index(COMPLETED) > max(i for i, kind in enumerate(kinds) if kind == DELTA)

    audio, start, stop = turn_audio(chunks)
    assert started["audio_start_ms"] == start * 1000 // ASR_RATE  # the same turn the session found
    assert seen[stopped]["audio_end_ms"] == stop * 1000 // ASR_RATE
    partial = "".join(d["delta"] for d in deltas)
    final = next(e for e in seen if e["type"] == COMPLETED)["transcript"]
    assert partial == transcribed(url, audio, "paraformer-online")  # first pass: the streaming model on the turn
    assert final == transcribed(url, audio, "paraformer")  # second pass: the offline model (+ punctuation)
    assert final != partial


def test_partials_while_speaking_then_the_offline_final(local_stack):
    chunks = microphone()
    check_two_pass(local_stack, asyncio.run(talk(local_stack, chunks)), chunks)


@pytest.fixture(scope="module")
def streaming_app(ray_cluster):
    """Paraformer and the streaming Paraformer, one replica each, behind a gateway with partials on."""
    local = load_app_args(LOCAL_CONFIG)
    one = DeploymentArgs(num_cpus=0, num_replicas=1, max_ongoing_requests=16, max_queued_requests=64)
    models = [local.model(name).model_copy(update={"deployment": one}) for name in ("paraformer", "paraformer-online")]
    gateway = local.gateway.model_copy(update={"deployment": one})
    serve.run(build_app(AppArgs(models=models, gateway=gateway)), name="partials", route_prefix="/partials")
    yield ray_cluster + "/partials"
    serve.delete("partials")


def test_killing_the_streaming_replica_mid_turn_recovers_the_session(streaming_app):
    """The replica that holds the turn's stream dies after the first partial. The next call is sent
    again, reaches the replacement, which has no stream (StreamLost), and the turn's audio so far is
    replayed there: the partials go on as if nothing happened, and the final text arrives."""
    killed = []

    def kill() -> None:
        pids = replica_pids("partials", "paraformer-online")
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    chunks = microphone()
    seen = asyncio.run(talk(streaming_app, chunks, on_first_delta=kill))
    assert killed
    check_two_pass(streaming_app, seen, chunks)
    wait_until(lambda: killed[0] not in replica_pids("partials", "paraformer-online"), 120,
               "Ray to mark the killed replica dead")
