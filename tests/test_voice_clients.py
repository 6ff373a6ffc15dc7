"""What real voice clients send (issue 20), against the local stack: realtime transcription sessions as
the OpenAI Agents SDK and Pipecat open them, OpenAI's voice and model names and `instructions` on
/v1/audio/speech, and audio too short to transcribe. Every realtime server event is checked against
the `openai` package's own pydantic class for it."""

from __future__ import annotations

import asyncio
import json
from typing import get_args

import httpx
import numpy as np
import openai
import pytest
import websockets

from gateway.realtime.audio import encode_pcm16
from gateway.services import OPENAI_MODEL_IDS
from mmserve.config.app import load_app_args
from mmserve.media import decode_audio
from mmserve.protocol.tts import OPENAI_VOICES
from mmserve.runners.chattts import DEFAULT_OPENAI_VOICES
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_EN, SPEECH_ZH
from tests.test_live_voice import SERVER_EVENTS

RATE = 24000
LLM = "qwen2.5-7b-instruct"


def pcm24k(path=SPEECH_EN) -> np.ndarray:
    return decode_audio(path.read_bytes(), target_rate=RATE).samples


def test_every_openai_voice_and_model_name_is_known():
    """The tables here cover what the installed `openai` package lists (it grows: this fails first)."""
    from openai.types.audio.speech_create_params import Voice

    listed = {name for option in get_args(Voice) for name in get_args(option)}
    assert listed <= set(OPENAI_VOICES), listed - set(OPENAI_VOICES)
    assert set(DEFAULT_OPENAI_VOICES) == set(OPENAI_VOICES)
    from openai.types.audio.speech_model import SpeechModel
    from openai.types.audio_model import AudioModel

    assert set(get_args(SpeechModel)) <= OPENAI_MODEL_IDS["tts"]
    assert set(get_args(AudioModel)) <= OPENAI_MODEL_IDS["asr"]


async def receive(ws, kinds: set[str], seen: list[dict], timeout: float = 120) -> dict:
    """The next server event of one of `kinds`, every event checked against openai's class for it."""
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            SERVER_EVENTS[event["type"]].model_validate(event)
            seen.append(event)
            if event["type"] in kinds:
                return event


def test_a_transcription_session_transcribes_turns_and_never_answers(local_stack):
    ws_url = local_stack.replace("http", "ws") + "/v1/realtime?intent=transcription"

    async def run() -> list[dict]:
        seen: list[dict] = []
        async with websockets.connect(ws_url) as ws:
            created = await receive(ws, {"session.created"}, seen)
            assert created["session"]["type"] == "transcription"
            # what the Agents SDK sends: OpenAI's model name, semantic_vad, 24 kHz PCM
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": RATE}, "transcription": {
                    "model": "gpt-4o-transcribe"}, "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}}))
            updated = await receive(ws, {"session.updated"}, seen)
            detection = updated["session"]["audio"]["input"]["turn_detection"]
            assert detection["type"] == "semantic_vad" and detection["silence_duration_ms"] == 300, detection
            quiet = np.zeros(RATE, np.float32)
            for samples in (quiet, pcm24k(), quiet, pcm24k(SPEECH_ZH), quiet):  # two turns, faster than real time
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": encode_pcm16(samples)}))
            done = [await receive(ws, {"conversation.item.input_audio_transcription.completed"}, seen)
                    for _ in range(2)]
            assert all(d["transcript"].strip() for d in done), done
            await ws.send(json.dumps({"type": "response.create", "event_id": "answer-me"}))
            error = await receive(ws, {"error"}, seen)
            assert error["error"]["code"] == "session_type_mismatch" and error["error"]["event_id"] == "answer-me"
            # a commit of an empty buffer has OpenAI's code (the Agents SDK ignores it at the end of input)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await receive(ws, {"input_audio_buffer.cleared"}, seen)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "eof"}))
            empty = await receive(ws, {"error"}, seen)
            assert empty["error"]["code"] == "input_audio_buffer_commit_empty", empty
            assert empty["error"]["event_id"] == "eof"
        return seen

    seen = asyncio.run(run())
    kinds = [e["type"] for e in seen]
    assert kinds.count("input_audio_buffer.speech_started") == kinds.count("input_audio_buffer.speech_stopped") == 2
    assert not [k for k in kinds if k.startswith("response.")]


def test_the_agents_sdk_streamed_voice_pipeline_completes_a_turn(local_stack):
    """openai-agents' VoicePipeline with a StreamedAudioInput, its models given only our base URL: its STT
    opens a transcription session (model gpt-4o-transcribe), its TTS asks for gpt-4o-mini-tts, voice
    `ash`, PCM, with `instructions`."""
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel
    from agents.voice import (
        OpenAIVoiceModelProvider,
        SingleAgentVoiceWorkflow,
        StreamedAudioInput,
        VoicePipeline,
        VoicePipelineConfig,
    )

    async def run() -> tuple[list[str], int]:
        client = openai.AsyncOpenAI(base_url=local_stack + "/v1", api_key="unused", max_retries=0)
        agent = Agent(name="assistant", instructions="Answer in one short sentence.",
                      model=OpenAIChatCompletionsModel(model=LLM, openai_client=client),
                      model_settings=ModelSettings(max_tokens=8))
        pipeline = VoicePipeline(workflow=SingleAgentVoiceWorkflow(agent), config=VoicePipelineConfig(
            model_provider=OpenAIVoiceModelProvider(openai_client=client), tracing_disabled=True))
        microphone = StreamedAudioInput()
        result = await pipeline.run(microphone)
        quiet = np.zeros(RATE // 2, np.int16)
        speech = (np.clip(pcm24k(), -1, 1) * 32767).astype(np.int16)
        for samples in (quiet, speech, quiet, quiet):
            await microphone.add_audio(samples)
        lifecycle, audio_bytes = [], 0
        async with asyncio.timeout(240):
            async for event in result.stream():
                if event.type == "voice_stream_event_audio" and event.data is not None:
                    audio_bytes += event.data.nbytes
                elif event.type == "voice_stream_event_lifecycle":
                    lifecycle.append(event.event)
                    if event.event == "turn_ended":
                        await microphone.add_audio(None)  # the end of input: the session closes
                elif event.type == "voice_stream_event_error":
                    raise AssertionError(f"the pipeline failed: {event.error!r}")
        return lifecycle, audio_bytes

    lifecycle, audio_bytes = asyncio.run(run())
    assert lifecycle[:2] == ["turn_started", "turn_ended"] and lifecycle[-1] == "session_ended", lifecycle
    assert audio_bytes > 0


@pytest.fixture(scope="module")
def tts_voices() -> list[str]:
    return sorted(load_app_args(LOCAL_CONFIG).model("chattts").runner.voices)


def test_a_pipecat_style_speech_request_with_an_openai_voice(local_stack):
    """Pipecat's OpenAI TTS: model tts-1, an OpenAI voice, raw PCM, streamed."""
    with httpx.stream("POST", local_stack + "/v1/audio/speech", timeout=120, json={
            "model": "tts-1", "voice": "alloy", "input": "你好。", "response_format": "pcm",
            "instructions": "Speak warmly. [oral_2][laugh_0][break_4]"}) as resp:
        body = resp.read()
        assert resp.status_code == 200, body
        assert resp.headers["x-sample-rate"] == "24000"
    assert len(body) > 0 and len(body) % 2 == 0


@pytest.mark.parametrize("body, param", [
    ({"voice": "bogus"}, "voice"),
    ({"voice": "alloy", "instructions": "[laugh_7]"}, "instructions"),
    ({"model": "gpt-5", "voice": "alloy"}, "model"),
])
def test_speech_refuses_unknown_voices_prosody_and_models(local_stack, body, param):
    resp = httpx.post(local_stack + "/v1/audio/speech", timeout=60, json={"input": "你好。", **body})
    assert 400 <= resp.status_code < 500 and resp.json()["error"]["param"] == param, resp.text


@pytest.mark.parametrize("route, data", [
    ("/v1/audio/transcriptions", {"model": "paraformer"}),
    ("/v1/audio/transcriptions", {"model": "whisper-1"}),
    ("/v1/flows/speech-to-image", {}),
])
def test_too_little_audio_is_a_400_naming_the_file(local_stack, route, data):
    """A WAV cut to 60 bytes (its header promises more than it holds): 8 samples, not a 200 with ''."""
    resp = httpx.post(local_stack + route, timeout=60, data=data,
                      files={"file": ("cut.wav", SPEECH_EN.read_bytes()[:60], "audio/wav")})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "file" and "minimum audio length is 0.1 seconds" in error["message"], error


def test_a_transcription_prompt_reaches_the_asr_model_as_hotwords(local_stack):
    """`audio.input.transcription.prompt` is sent as hotwords, as /v1/audio/transcriptions sends `prompt`:
    101 of them (Paraformer takes at most 100) fail the turn's transcription naming `hotwords`."""
    ws_url = local_stack.replace("http", "ws") + "/v1/realtime?intent=transcription"

    async def run() -> dict:
        seen: list[dict] = []
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
                "input": {"transcription": {"model": "paraformer", "prompt": " ".join(["w"] * 101)},
                          "turn_detection": None}}}}))
            await receive(ws, {"session.updated"}, seen)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": encode_pcm16(pcm24k())}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            return await receive(ws, {"conversation.item.input_audio_transcription.failed",
                                      "conversation.item.input_audio_transcription.completed"}, seen)

    event = asyncio.run(run())
    assert event["type"].endswith(".failed") and event["error"]["param"] == "hotwords", event
