"""Cross-modal flows over real HTTP: describe aloud, spoken question, streaming voice chat."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
import soundfile as sf
from PIL import Image

from mmserve.media import encode_png
from tests.helpers import SPEECH_EN, SPEECH_ZH


def png(color: str = "blue", size=(64, 48)) -> bytes:
    return encode_png(Image.new("RGB", size, color))


def assert_speech(audio: dict) -> None:
    if audio["b64_wav"] is None:  # every piece unspeakable: said so, not silently dropped
        assert audio["skipped_text"]
        return
    samples, rate = sf.read(io.BytesIO(base64.b64decode(audio["b64_wav"])), dtype="float32")
    assert rate == audio["sample_rate"] == 24000
    assert len(samples) / rate == pytest.approx(audio["duration_s"], abs=0.01)


def test_describe_aloud(local_stack):
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", timeout=120,
                      files=[("image", ("a.png", png(), "image/png")), ("image", ("b.png", png("red"), "image/png"))],
                      data={"voice": "female_1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["description"], str)
    assert_speech(body["audio"])
    assert body["timings"]["vlm_ms"] > 0 and body["timings"]["tts_ms"] > 0


def test_spoken_question_about_an_image(local_stack):
    resp = httpx.post(local_stack + "/v1/flows/spoken-question", timeout=120,
                      files=[("image", ("a.png", png(), "image/png")),
                             ("file", ("q.wav", SPEECH_ZH.read_bytes(), "audio/wav"))])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["question"].strip() and isinstance(body["answer"], str)
    assert_speech(body["audio"])
    assert {"asr_ms", "vlm_ms", "tts_ms", "total_ms"} <= body["timings"].keys()


def read_events(resp: httpx.Response) -> list[tuple[float, dict | str]]:
    events = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append((time.perf_counter(), data if data == "[DONE]" else json.loads(data)))
    return events


def test_voice_chat_streams_audio_chunk_by_chunk(local_stack):
    with httpx.stream("POST", local_stack + "/v1/flows/voice-chat", timeout=180,
                      files={"file": ("q.wav", SPEECH_EN.read_bytes(), "audio/wav")}) as resp:
        assert resp.status_code == 200
        events = read_events(resp)
    kinds = [e["type"] if isinstance(e, dict) else e for _, e in events]
    assert kinds[0] == "transcript" and kinds[-2] == "done" and kinds[-1] == "[DONE]"
    assert "text" in kinds
    pieces = [e for _, e in events if isinstance(e, dict) and e["type"] in ("audio", "skipped")]
    clauses = [p["index"] for p in pieces]
    assert clauses == sorted(clauses) and sorted(set(clauses)) == list(range(len(set(clauses))))  # in order
    for index in set(clauses):  # a clause's chunks, in order
        assert [p.get("chunk", 0) for p in pieces if p["index"] == index] == list(range(clauses.count(index)))
    done = events[-2][1]
    assert "".join(e["delta"] for _, e in events if isinstance(e, dict) and e["type"] == "text") == done["reply"]
    audio = [(t, e) for t, e in events if isinstance(e, dict) and e["type"] == "audio"]
    assert audio, "the reply produced no speakable clause"
    for _, event in audio:
        samples, rate = sf.read(io.BytesIO(base64.b64decode(event["b64_wav"])))
        assert rate == 24000 and len(samples) > 0
    assert {"asr_ms", "llm_first_token_ms", "llm_done_ms", "first_audio_ms", "total_ms"} <= done["timings"].keys()
    # that the first audio leaves before the LLM has finished: tests/test_live_voice.py


def test_voice_chat_without_streaming(local_stack):
    resp = httpx.post(local_stack + "/v1/flows/voice-chat", timeout=180, data={"stream": "false"},
                      files={"file": ("q.wav", SPEECH_ZH.read_bytes(), "audio/wav")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["transcript"] and isinstance(body["reply"], str) and "total_ms" in body["timings"]
    # one piece per clause: a clause's streamed chunks joined into one WAV
    assert [c["index"] for c in body["clauses"]] == list(range(len(body["clauses"])))
    assert not any("chunk" in c for c in body["clauses"])


def test_a_failing_stage_names_itself(local_stack):
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", timeout=120, data={"voice": "nobody"},
                      files={"image": ("a.png", png(), "image/png")})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["stage"] == "tts" and error["param"] == "voice"


@pytest.mark.parametrize("files,param", [
    ({"image": ("a.png", b"not an image", "image/png")}, "image"),
    ({"image": ("a.png", b"", "image/png")}, "image"),
])
def test_bad_images_are_400(local_stack, files, param):
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", files=files, timeout=60)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_too_many_images_is_400(local_stack):
    files = [("image", (f"{i}.png", png(), "image/png")) for i in range(9)]
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", files=files, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "image"


def test_voice_chat_with_undecodable_audio_is_400(local_stack):
    resp = httpx.post(local_stack + "/v1/flows/voice-chat", files={"file": ("q.wav", b"junk" * 100)}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "file"


@pytest.mark.parametrize("prefix", ["/v1/flows", "/v1/pipelines"])
def test_flows_answer_under_their_name_and_their_old_one(local_stack, prefix):
    """/v1/flows/ is the routes' name (as in `flows:`); /v1/pipelines/, their name before, still answers
    the same way for clients written then, but only /v1/flows/ is in the API docs."""
    resp = httpx.post(local_stack + prefix + "/voice-chat", files={"file": ("q.wav", b"junk" * 100)}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "file"
    paths = httpx.get(local_stack + "/openapi.json", timeout=30).json()["paths"]
    assert ("/v1/flows/voice-chat" in paths, "/v1/pipelines/voice-chat" in paths) == (True, False)
