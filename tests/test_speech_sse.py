"""`/v1/audio/speech` with `stream_format: "sse"`, read by the official `openai` client as OpenAI documents:
`speech.audio.delta` events carrying base64 audio as ChatTTS decodes it, then one `speech.audio.done`."""

from __future__ import annotations

import base64
import json
import time

import openai
import pytest


@pytest.fixture(scope="module")
def client(local_stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_stack + "/v1", api_key="unused-without-keys", max_retries=0, timeout=120)


def read_events(client: openai.OpenAI, **fields) -> tuple[dict, list[tuple[float, dict]]]:
    """The response headers and each SSE event with the time it arrived."""
    with client.audio.speech.with_streaming_response.create(
            model="chattts", voice="female_1", input="第一句话。第二句话。", stream_format="sse", **fields) as resp:
        events = [(time.monotonic(), json.loads(line[len("data: "):]))
                  for line in resp.iter_lines() if line.startswith("data: ")]
        return dict(resp.headers), events


def test_sse_sends_pcm_deltas_as_decoded_then_done(client):
    headers, events = read_events(client)  # no response_format: pcm, the format that can be cut anywhere
    assert headers["content-type"].startswith("text/event-stream") and headers["x-sample-rate"] == "24000"
    types = [event["type"] for _, event in events]
    assert types[-1] == "speech.audio.done" and types.count("speech.audio.done") == 1
    deltas = [event for _, event in events if event["type"] == "speech.audio.delta"]
    assert len(deltas) >= 3 and len(deltas) == len(events) - 1, types
    pcm = [base64.b64decode(event["audio"]) for event in deltas]
    assert all(piece and len(piece) % 2 == 0 for piece in pcm)
    assert pcm[0][:4] != b"RIFF"
    # decoded chunk by chunk: the first delta arrives while later chunks are still being synthesized
    assert events[-1][0] - events[0][0] > 0.05


def test_sse_wav_carries_a_streaming_header_in_its_first_delta(client):
    _, events = read_events(client, response_format="wav")
    audio = b"".join(base64.b64decode(e["audio"]) for _, e in events if e["type"] == "speech.audio.delta")
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 44 and len(audio) % 2 == 0


def test_stream_format_audio_is_still_the_bytes_themselves(client):
    with client.audio.speech.with_streaming_response.create(
            model="chattts", voice="female_1", input="你好。", response_format="pcm", stream_format="audio") as resp:
        assert resp.headers["content-type"] == "audio/pcm"
        data = resp.read()
    assert len(data) > 0 and len(data) % 2 == 0 and not data.startswith(b"data:")


@pytest.mark.parametrize("fields,param", [
    ({"response_format": "mp3"}, "response_format"),
    ({"response_format": "flac"}, "response_format"),
    ({"extra_body": {"stream": False}}, "stream_format"),
])
def test_combinations_sse_cannot_carry_are_400_naming_the_field(client, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="chattts", voice="female_1", input="你好。", stream_format="sse", **fields)
    assert caught.value.status_code == 400 and caught.value.body["param"] == param
    assert param in caught.value.body["message"]


def test_unknown_stream_format_is_422_naming_it(client):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.audio.speech.create(model="chattts", voice="female_1", input="你好。", stream_format="ogg")
    assert caught.value.body["param"] == "stream_format"
