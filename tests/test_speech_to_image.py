"""The headline flow over real HTTP on a real local Ray cluster with the tiny models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from ray import serve

from mmserve.config.app import load_app_args
from tests.helpers import SPEECH_EN, SPEECH_ZH, convert_audio, decode_b64_png, wav_bytes

ROUTE = "/v1/flows/speech-to-image"
LOCAL_CONFIG = Path(__file__).parents[1] / "configs" / "local.yaml"


@pytest.fixture(scope="module")
def base_url(local_stack):
    return local_stack


def post_flow(base_url: str, audio: bytes, filename: str = "speech.wav", **form) -> httpx.Response:
    files = {"file": (filename, audio, "application/octet-stream")}
    return httpx.post(base_url + ROUTE, files=files, data={k: str(v) for k, v in form.items()}, timeout=120)


def assert_flow_ok(resp: httpx.Response, width: int = 128, height: int = 128, n: int = 1) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["transcript"], str)
    assert isinstance(body["prompt"], str) and body["prompt"].strip()
    assert len(body["images"]) == n
    for item in body["images"]:
        image = decode_b64_png(item["b64_json"])
        assert image.size == (width, height)
    for stage in ("asr_ms", "image_ms", "total_ms"):
        assert body["timings"][stage] > 0
    assert body["timings"]["total_ms"] >= body["timings"]["asr_ms"] + body["timings"]["image_ms"]
    return body


def test_spoken_chinese_wav_gives_transcript_prompt_and_png(base_url):
    body = assert_flow_ok(post_flow(base_url, SPEECH_ZH.read_bytes(), seed=1))
    assert body["timings"]["rewrite_ms"] > 0
    assert body["audio_duration_s"] == pytest.approx(sf.info(SPEECH_ZH).duration, abs=0.05)
    if body["timestamps"] is not None:
        for start, end in body["timestamps"]:
            assert 0 <= start <= end <= body["audio_duration_s"] * 1000 + 100


@pytest.mark.parametrize("fmt,rate,stereo", [("FLAC", 44100, True), ("OGG", 48000, False), ("MP3", 16000, True)])
def test_other_containers_rates_and_channels(base_url, fmt, rate, stereo):
    audio = convert_audio(SPEECH_EN, fmt, rate=rate, stereo=stereo)
    resp = post_flow(base_url, audio, filename=f"speech.{fmt.lower()}", width=64, height=96)
    body = assert_flow_ok(resp, width=64, height=96)
    assert body["audio_duration_s"] == pytest.approx(sf.info(SPEECH_EN).duration, abs=0.1)


def test_whisper_transcribes_real_words_with_rewrite_off(base_url):
    """The first test of content, not shape: Whisper tiny.en (real weights) hears the English WAV
    ("Draw a small cat sitting by the sea at sunset."), and with rewrite off its transcript is the prompt."""
    body = assert_flow_ok(post_flow(base_url, SPEECH_EN.read_bytes(), asr_model="whisper-tiny", rewrite="false",
                                    seed=0))
    words = {w.strip(".,!?").lower() for w in body["transcript"].split()}
    assert {"cat", "sea"} <= words, body["transcript"]
    assert body["prompt"] == body["transcript"].strip() and "rewrite_ms" not in body["timings"]
    assert body["timestamps"] and len(body["timestamps"]) == len(body["transcript"].split())
    for start, end in body["timestamps"]:
        assert 0 <= start <= end <= body["audio_duration_s"] * 1000


def test_image_options_reach_the_model(base_url):
    resp = post_flow(base_url, SPEECH_EN.read_bytes(), width=96, height=64, steps=2, guidance=3.5, n=2,
                     negative_prompt="blurry", seed=7, hotwords="cat,sea")
    assert_flow_ok(resp, width=96, height=64, n=2)


def test_concurrent_requests_all_succeed(base_url):
    async def many():
        async with httpx.AsyncClient(timeout=120) as client:
            files = lambda: {"file": ("speech.wav", SPEECH_ZH.read_bytes(), "audio/wav")}  # noqa: E731
            return await asyncio.gather(*[
                client.post(base_url + ROUTE, files=files(), data={"seed": str(i)}) for i in range(4)])

    for resp in asyncio.run(many()):
        assert_flow_ok(resp)


def error_of(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"]
    return error


@pytest.mark.parametrize("audio,status,param", [
    (b"definitely not audio" * 10, 400, "file"),
    (b"", 400, "file"),
])
def test_bad_audio_is_a_clear_4xx(base_url, audio, status, param):
    assert error_of(post_flow(base_url, audio), status)["param"] == param


def test_audio_over_the_length_limit_is_413(base_url):
    limit = load_app_args(LOCAL_CONFIG).gateway.limits.max_audio_s
    silence = np.zeros(int(16000 * (limit + 1)), dtype=np.float32)
    resp = post_flow(base_url, wav_bytes(silence, 16000))
    assert error_of(resp, 413)["param"] == "file"


@pytest.mark.parametrize("form,param", [
    ({"width": 100}, "width"),
    ({"height": 4096}, "height"),
    ({"steps": 0}, "steps"),
    ({"n": 9}, "n"),
    ({"width": "wide"}, "width"),
    ({"negative_prompt": "x" * 5000}, "negative_prompt"),
])
def test_bad_image_options_name_the_field(base_url, form, param):
    resp = post_flow(base_url, SPEECH_ZH.read_bytes(), **form)
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["error"]["param"] == param


def test_missing_file_is_422_naming_it(base_url):
    resp = httpx.post(base_url + ROUTE, data={"width": "128"}, timeout=30)
    assert error_of(resp, 422)["param"] == "file"


def test_replicas_stay_healthy_after_bad_input(base_url):
    for _ in range(3):
        post_flow(base_url, b"garbage")
    assert_flow_ok(post_flow(base_url, SPEECH_ZH.read_bytes()))
    status = serve.status().applications["mmserve"]
    assert status.status == "RUNNING"
    assert all(d.status == "HEALTHY" for d in status.deployments.values())


def test_upload_over_the_byte_limit_is_413_before_decoding(base_url):
    limit = load_app_args(LOCAL_CONFIG).gateway.limits.max_upload_bytes
    resp = post_flow(base_url, b"\0" * (limit + 200_000))
    assert error_of(resp, 413)["type"] == "payload_too_large"
