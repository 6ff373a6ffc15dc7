"""The official `openai` client against the local stack, every modality, plus raw-HTTP errors."""

from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
import soundfile as sf
from PIL import Image

from mmserve.config.app import load_app_args
from mmserve.media import encode_png
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_EN, SPEECH_ZH, decode_b64_png


@pytest.fixture(scope="module")
def client(local_stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_stack + "/v1", api_key="unused-without-keys", max_retries=0, timeout=120)


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


def served_names() -> set[str]:
    return {model.name for model in load_app_args(LOCAL_CONFIG).models}


def test_model_list_comes_from_config(client):
    models = {m.id for m in client.models.list()}
    assert served_names() <= models and {"paraformer", "sensevoice", "whisper-tiny", "sd3-medium"} <= models


@pytest.mark.parametrize("fmt", ["json", "verbose_json", "text", "srt", "vtt"])
def test_transcription_formats(client, fmt):
    with SPEECH_ZH.open("rb") as f:
        result = client.audio.transcriptions.create(model="paraformer", file=f, response_format=fmt, prompt="小猫 海边")
    if fmt == "json":
        assert isinstance(result.text, str)
    elif fmt == "verbose_json":
        assert result.duration == pytest.approx(sf.info(SPEECH_ZH).duration, abs=0.05)
        for seg in result.segments or []:
            assert 0 <= seg.start <= seg.end <= result.duration + 0.1
    elif fmt == "vtt":
        assert result.startswith("WEBVTT")
    else:
        assert isinstance(result, str)


@pytest.mark.parametrize("clip", [SPEECH_ZH, SPEECH_EN], ids=["zh", "en"])
def test_sensevoice_serves_beside_paraformer_and_whisper(client, clip):
    """SenseVoice-Small (tiny, random weights): its rich tags (<|zh|><|NEUTRAL|>...) never reach the
    client; the language it tagged, if any, is one SenseVoice knows."""
    with clip.open("rb") as f:
        result = client.audio.transcriptions.create(model="sensevoice", file=f, response_format="verbose_json")
    assert "<|" not in result.text and "|>" not in result.text
    assert result.language in ("zh", "en", "yue", "ja", "ko")
    assert result.duration == pytest.approx(sf.info(clip).duration, abs=0.05)


def test_speech_whole_and_streamed(client):
    whole = client.audio.speech.create(model="chattts", input="你好，世界。Hello world.", voice="female_1",
                                       response_format="wav", extra_body={"stream": False})
    samples, rate = sf.read(io.BytesIO(whole.content), dtype="float32")
    assert rate == 24000 and samples.ndim == 1 and len(samples) > 0
    chunks = []
    with client.audio.speech.with_streaming_response.create(
            model="chattts", input="第一句话。第二句话。", voice="male_1", response_format="pcm") as resp:
        assert resp.headers["x-sample-rate"] == "24000"
        chunks = [c for c in resp.iter_bytes() if c]
    assert sum(len(c) for c in chunks) % 2 == 0 and sum(len(c) for c in chunks) > 0


def test_speech_by_speaker_seed(client):
    audio = client.audio.speech.create(model="chattts", input="好的。", voice="female_1", response_format="wav",
                                       extra_body={"stream": False, "speaker_seed": 7, "voice": None})
    assert sf.info(io.BytesIO(audio.content)).samplerate == 24000


@pytest.mark.parametrize("fmt,sf_format", [("mp3", "MP3"), ("flac", "FLAC")])
def test_speech_encodings(client, fmt, sf_format):
    audio = client.audio.speech.create(model="chattts", input="Hello there.", voice="female_2", response_format=fmt)
    assert sf.info(io.BytesIO(audio.content)).format == sf_format


def test_streamed_wav_is_a_playable_wav(local_stack):
    with httpx.stream("POST", local_stack + "/v1/audio/speech", timeout=120,
                      json={"input": "你好。再见。", "response_format": "wav"}) as resp:
        assert resp.status_code == 200
        data = b"".join(resp.iter_bytes())
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) > 44


def test_image_generation(client):
    result = client.images.generate(model="sd3-medium", prompt="一只小猫 on the beach", n=2, size="128x128",
                                    response_format="b64_json", extra_body={"seed": 3, "num_inference_steps": 2})
    assert len(result.data) == 2
    assert all(decode_b64_png(d.b64_json).size == (128, 128) for d in result.data)


def test_chat_plain_and_streamed(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，介绍一下你自己"}]
    reply = client.chat.completions.create(model="qwen2.5-7b-instruct", messages=messages, max_tokens=12,
                                           temperature=0)
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 13 and reply.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model="qwen2.5-7b-instruct", messages=messages, max_tokens=12,
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1
    assert "".join(deltas) == reply.choices[0].message.content  # greedy: the same text either way
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_chat_with_an_image_goes_to_the_vlm(client):
    content = [{"type": "text", "text": "图里有什么？"},
               {"type": "image_url", "image_url": {"url": data_url(Image.new("RGB", (48, 40), "red"))}}]
    reply = client.chat.completions.create(messages=[{"role": "user", "content": content}], max_tokens=8,
                                           model="internvl")
    assert reply.model == "internvl" and isinstance(reply.choices[0].message.content, str)
    stream = client.chat.completions.create(messages=[{"role": "user", "content": content}], max_tokens=8,
                                            model="internvl", stream=True)
    assert [c for c in stream if c.choices and c.choices[0].delta.content is not None]


def test_music_route(local_stack):
    resp = httpx.post(local_stack + "/v1/audio/music", json={"prompt": "calm piano", "duration_s": 1.5, "seed": 1},
                      timeout=120)
    assert resp.status_code == 200, resp.text
    info = sf.info(io.BytesIO(resp.content))
    assert info.duration == pytest.approx(1.5, abs=0.01)


# ---------------------------------------------------------------- errors over raw HTTP
def error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["message"] and body["type"]
    return body


def test_unknown_model_is_404(local_stack):
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})
    assert error(resp, 404)["param"] == "model"


@pytest.mark.parametrize("path,payload,param", [
    ("/v1/images/generations", {"prompt": ""}, "prompt"),
    ("/v1/images/generations", {"prompt": "cat", "size": "big"}, "size"),
    ("/v1/images/generations", {"prompt": "cat", "size": "100x100"}, "size"),
    ("/v1/images/generations", {"prompt": "cat", "n": 50}, "n"),
    ("/v1/images/generations", {"prompt": "cat", "response_format": "url"}, "response_format"),
    ("/v1/audio/speech", {"input": "   "}, "input"),
    ("/v1/audio/speech", {"input": "x" * 5000}, "input"),
    ("/v1/audio/speech", {"input": "hello", "voice": "nobody"}, "voice"),
    ("/v1/audio/speech", {"input": "hello", "speaker_embedding": "not-an-embedding"}, "speaker_embedding"),
    ("/v1/audio/music", {"prompt": "piano", "duration_s": 999}, "duration_s"),
])
def test_bad_fields_are_400_naming_the_field(local_stack, path, payload, param):
    assert error(httpx.post(local_stack + path, json=payload, timeout=60), 400)["param"] == param


def test_missing_and_mistyped_fields_are_422(local_stack):
    resp = httpx.post(local_stack + "/v1/images/generations", json={"n": 1}, timeout=30)
    assert error(resp, 422)["param"] == "prompt"
    resp = httpx.post(local_stack + "/v1/chat/completions", json={"messages": []}, timeout=30)
    assert error(resp, 422)["param"] == "messages"
    resp = httpx.post(local_stack + "/v1/audio/speech", content=b"{not json", timeout=30,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 422


@pytest.mark.parametrize("image_bytes,status", [(b"garbage", 400), (b"", 400)])
def test_bad_images_for_the_vlm(local_stack, image_bytes, status):
    url = "data:image/png;base64," + base64.b64encode(image_bytes).decode()
    content = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"model": "internvl", "messages": [{"role": "user", "content": content}]})
    assert error(resp, status)["param"] == "image_url"


def test_too_many_images_and_images_for_a_text_model(local_stack):
    part = {"type": "image_url", "image_url": {"url": data_url(Image.new("RGB", (8, 8)))}}
    content = [{"type": "text", "text": "compare"}] + [part] * 9
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"messages": [{"role": "user", "content": content}]})
    assert error(resp, 400)["param"] == "messages"
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": content[:2]}]})
    assert error(resp, 400)["param"] == "messages"


def test_whisper_verbose_json_has_its_segments_and_word_times(client):
    """faster-whisper (real Whisper tiny.en weights): its own segments and word timestamps."""
    with SPEECH_EN.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="verbose_json",
                                                    prompt="cat, sunset")
    duration = sf.info(SPEECH_EN).duration
    assert result.language == "en" and result.duration == pytest.approx(duration, abs=0.05)
    assert {"cat", "sea"} <= {w.strip(".,").lower() for w in result.text.split()}, result.text
    assert result.segments and " ".join(s.text for s in result.segments) == result.text
    for seg in result.segments:
        assert 0 <= seg.start <= seg.end <= result.duration + 0.01
    words = [w.word.strip(".,").lower() for w in result.words]
    assert "cat" in words and "sea" in words
    assert all(0 <= w.start <= w.end <= result.duration + 0.01 for w in result.words)
    assert [w.start for w in result.words] == sorted(w.start for w in result.words)
    with SPEECH_EN.open("rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:0") and "cat" in srt


@pytest.mark.parametrize("audio,prompt,param", [
    (b"", None, "file"),
    (None, " ".join(["w"] * 101), "hotwords"),
    (None, "x" * 40, "hotwords"),
])
def test_bad_input_to_whisper_is_400_naming_the_field(local_stack, audio, prompt, param):
    audio = SPEECH_EN.read_bytes() if audio is None else audio
    resp = httpx.post(local_stack + "/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, timeout=60,
                      data={"model": "whisper-tiny", **({"prompt": prompt} if prompt else {})})
    assert error(resp, 400)["param"] == param


def test_undecodable_upload_to_transcription(local_stack):
    resp = httpx.post(local_stack + "/v1/audio/transcriptions", files={"file": ("a.wav", b"junk" * 50)}, timeout=30)
    assert error(resp, 400)["param"] == "file"


def test_request_id_round_trips(local_stack):
    resp = httpx.get(local_stack + "/v1/models", headers={"x-request-id": "test-id-123"}, timeout=30)
    assert resp.headers["x-request-id"] == "test-id-123"


def test_sse_chat_format_on_the_wire(local_stack):
    payload = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4}
    with httpx.stream("POST", local_stack + "/v1/chat/completions", json=payload, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_a_request_id_is_made_when_none_is_sent(local_stack):
    assert httpx.get(local_stack + "/healthz", timeout=30).headers["x-request-id"]


def test_ready_once_every_model_runs(local_stack):
    resp = httpx.get(local_stack + "/readyz", timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready" and body["waiting_for"] == []
    # keyed by model name: each model's Serve deployment is named after it
    assert set(body["running_replicas"]) == served_names()
    assert all(n >= 1 for n in body["running_replicas"].values())
