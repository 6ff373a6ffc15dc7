"""A client that goes away mid-request stops the work downstream within one step (issue 11, item 4).

One test per route, over real HTTP: start a long request on a raw socket, poll the model's progress
counter (`ModelReplica.progress`: denoising steps, tokens, ChatTTS codes) until work has started,
close the socket, poll until the counter stands still, then check that the replica got the cancel,
that at most one step ran after it reached the runner, and that the request stopped far below the
work it asked for.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from ray import serve

from bench.wait import wait_until
from graphs.app import build_app
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from mmserve.config.flows import FlowsArgs, VoiceChatArgs
from mmserve.protocol.image import ImageRequest
from mmserve.runners.progress import Cancel
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_EN

APP = "disconnects"
LLM, TTS, IMAGE, ASR = "qwen2.5-7b-instruct", "chattts", "sd3-medium", "paraformer"
LONG_REPLY = 3000  # tokens asked for; greedy decoding of the tiny model does not end early
LONG_TEXT = " ".join(["This sentence is spoken for a long time, and then some more."] * 6)  # 6 x 2048 codes
IMAGE_STEPS = 400
STEPS_AFTER_CANCEL = 1  # the promise: the step under way when the cancel arrives finishes, no other


@pytest.fixture(scope="module")
def app_url(ray_cluster):
    """ASR, LLM, TTS and SD3 only, each on one replica (so its progress counter is the one asked), with
    limits that allow long requests."""
    local = load_app_args(LOCAL_CONFIG)
    one_replica = DeploymentArgs(num_cpus=0.2, max_ongoing_requests=16, max_queued_requests=64)

    def model(name: str, **runner):
        entry = local.model(name)
        return entry.model_copy(update={"runner": entry.runner.model_copy(update=runner), "deployment": one_replica})

    gateway = local.gateway.without_partials().model_copy(
        update={"limits": local.gateway.limits.model_copy(update={"max_steps": 1000})})
    args = AppArgs(
        models=[model(ASR), model(LLM, max_new_tokens=LONG_REPLY, min_new_tokens=LONG_REPLY, adapters={}),
                model(TTS, max_new_token=2048, min_new_token=2048), model(IMAGE)],
        flows=FlowsArgs(voice_chat=VoiceChatArgs(max_new_tokens=LONG_REPLY, temperature=0.0)),
        gateway=gateway)
    serve.run(build_app(args), name=APP, route_prefix="/" + APP)
    yield f"{ray_cluster}/{APP}"
    serve.delete(APP)


def progress(model: str) -> dict:
    return serve.get_deployment_handle(model, APP).progress.remote().result(timeout_s=60)


def send_raw(url: str, **request) -> socket.socket:
    """POST over a plain socket, so the test can hang up at any moment, as a client that goes away does."""
    req = httpx.Request("POST", url, **request)
    body = req.read()
    head = f"POST {req.url.raw_path.decode()} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in req.headers.items()) + "\r\n"
    sock = socket.create_connection((req.url.host, req.url.port), timeout=30)
    sock.sendall(head.encode() + body)
    return sock


def wait_for(condition, what: str, deadline_s: float = 180.0):
    return wait_until(condition, deadline_s, what, 0.05, error=AssertionError)


def standing_still(model: str, quiet_s: float, deadline_s: float = 180.0) -> dict:
    """The model's progress once its step count has not moved for quiet_s seconds."""
    last, since, deadline = progress(model), time.monotonic(), time.monotonic() + deadline_s
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"{model} kept working: {last}"
        time.sleep(0.1)
        now = progress(model)
        if now["steps"] != last["steps"]:
            last, since = now, time.monotonic()
    return last


def leave_midway(model: str, url: str, started_after: int, **request) -> tuple[dict, dict, dict]:
    """Send the request, hang up once `model` did `started_after` steps for it; the counter before,
    at the hang-up and once it stands still again."""
    before = progress(model)
    sock = send_raw(url, **request)
    sent = time.monotonic()
    try:
        at_close = wait_for(lambda: (p := progress(model))["steps"] - before["steps"] >= started_after and p,
                            f"{model} to start working")
        step_s = (time.monotonic() - sent) / (at_close["steps"] - before["steps"])
    finally:
        sock.close()
    wait_for(lambda: progress(model)["cancels"] > before["cancels"], f"{model} to be told the client left")
    final = standing_still(model, quiet_s=max(2.0, 20 * step_s))
    return before, at_close, final


def assert_stopped(model: str, before: dict, at_close: dict, final: dict, asked: int) -> None:
    done = final["steps"] - before["steps"]
    after_cancel = final["steps"] - final["steps_at_cancel"]
    print(f"{model}: {done} of {asked} steps, {final['steps'] - at_close['steps']} after the hang-up was seen, "
          f"{after_cancel} after the cancel reached the runner")
    assert final["cancels"] == before["cancels"] + 1, final
    assert after_cancel <= STEPS_AFTER_CANCEL, f"{after_cancel} steps ran after the cancel"
    assert done < asked / 4, f"{done} of {asked} steps: the request was not stopped"


def test_streamed_chat_stops_within_a_token(app_url):
    before, at_close, final = leave_midway(
        LLM, app_url + "/v1/chat/completions", started_after=20,
        json={"model": LLM, "messages": [{"role": "user", "content": "tell me a long story"}], "stream": True,
              "max_tokens": LONG_REPLY, "temperature": 0})
    assert_stopped(LLM, before, at_close, final, LONG_REPLY)


def test_streamed_speech_stops_within_a_code(app_url):
    before, at_close, final = leave_midway(
        TTS, app_url + "/v1/audio/speech", started_after=40,
        json={"model": TTS, "input": LONG_TEXT, "voice": "female_1", "response_format": "wav", "stream": True})
    assert_stopped(TTS, before, at_close, final, 6 * 2048)


def test_image_generation_stops_within_a_denoising_step(app_url):
    before, at_close, final = leave_midway(
        IMAGE, app_url + "/v1/images/generations", started_after=3,
        json={"model": IMAGE, "prompt": "a cat by the sea", "size": "128x128", "num_inference_steps": IMAGE_STEPS,
              "seed": 0})
    assert_stopped(IMAGE, before, at_close, final, IMAGE_STEPS)


def test_voice_chat_stops_generating_and_speaking(app_url):
    """The LLM's stream and the clauses already sent to TTS both stop."""
    llm_before, tts_before = progress(LLM), progress(TTS)
    sock = send_raw(app_url + "/v1/flows/voice-chat",
                    files={"file": ("q.wav", SPEECH_EN.read_bytes(), "audio/wav")}, data={"voice": "female_1"})
    try:  # a clause is being spoken: the LLM has streamed past the first clause
        wait_for(lambda: progress(TTS)["steps"] - tts_before["steps"] >= 10, "the first clause to be spoken")
        llm_at_close = progress(LLM)
    finally:
        sock.close()
    wait_for(lambda: progress(LLM)["cancels"] > llm_before["cancels"], "the LLM to be told the client left")
    llm_final = standing_still(LLM, quiet_s=3.0)
    assert_stopped(LLM, llm_before, llm_at_close, llm_final, LONG_REPLY)
    tts_final = standing_still(TTS, quiet_s=3.0)
    assert tts_final["cancels"] > tts_before["cancels"], "no clause synthesis was cancelled"
    assert tts_final["steps"] - tts_final["steps_at_cancel"] <= STEPS_AFTER_CANCEL


# ---- the runners' side, no cluster: who shares a model call, and music (not served above) ----------------

def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, out


def cancel_midway(runner, call, cancels: list[Cancel], leaving: list[Cancel], started_after: int = 2):
    """Run `call` on a thread, set the `leaving` cancels once the runner did `started_after` steps; the
    call's result and the runner's progress before and after."""
    before = runner.progress.snapshot()
    thread, out = in_thread(call)
    wait_for(lambda: runner.progress.snapshot()["steps"] - before["steps"] >= started_after, "work to start")
    for cancel in leaving:
        cancel.set()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the call did not return"
    return out["value"], before, runner.progress.snapshot()


@pytest.fixture(scope="module")
def sd3(tiny_models):
    from mmserve.runners.sd3 import ImageArgs, ImageRunner

    return ImageRunner(ImageArgs(model=str(tiny_models / "sd3"), device="cpu"))


def image_requests(steps: int) -> list[ImageRequest]:
    return [ImageRequest(prompt=p, width=64, height=64, num_inference_steps=steps, seed=i)
            for i, p in enumerate(["a cat", "a dog"])]


def test_one_request_leaving_an_image_batch_does_not_stop_the_other(sd3):
    cancels = [Cancel(sd3.progress), Cancel(sd3.progress)]
    images, before, after = cancel_midway(sd3, lambda: sd3.generate(image_requests(40), cancels), cancels,
                                          leaving=cancels[:1])
    assert after["steps"] - before["steps"] == 40
    assert len(images[1]) == 1 and images[1][0].size == (64, 64)


def test_an_image_batch_whose_requests_all_left_stops(sd3):
    cancels = [Cancel(sd3.progress), Cancel(sd3.progress)]
    images, before, after = cancel_midway(sd3, lambda: sd3.generate(image_requests(400), cancels), cancels,
                                          leaving=cancels)
    assert images == [[], []]
    assert after["steps"] - after["steps_at_cancel"] <= STEPS_AFTER_CANCEL
    assert after["steps"] - before["steps"] < 100


def test_music_stops_within_a_denoising_step(tiny_models):
    from mmserve.protocol.music import MusicRequest
    from mmserve.runners.stable_audio import MusicArgs, MusicRunner

    runner = MusicRunner(MusicArgs(model=str(tiny_models / "stable_audio"), device="cpu"))
    cancel = Cancel(runner.progress)
    request = MusicRequest(prompt="a slow piano", duration_s=1.0, steps=400, seed=0)
    audio, before, after = cancel_midway(runner, lambda: runner.generate(request, cancel), [cancel], [cancel])
    assert audio is None
    assert after["steps"] - after["steps_at_cancel"] <= STEPS_AFTER_CANCEL
    assert after["steps"] - before["steps"] < 100


def test_batched_speech_stops_only_when_all_its_requests_left(tiny_models):
    from mmserve.protocol.tts import SpeechRequest
    from mmserve.runners.chattts import TtsArgs, TtsRunner

    runner = TtsRunner(TtsArgs(model=str(tiny_models / "chattts"), device="cpu", max_new_token=600, min_new_token=600))
    # unseeded, same settings: all four sentences share one GPT batch, which runs until its longest ends
    requests = [SpeechRequest(text="One long sentence to speak."),
                SpeechRequest(text="Another long sentence. And one more. And the last one.")]
    cancels = [Cancel(runner.progress), Cancel(runner.progress)]
    clips, before, after = cancel_midway(runner, lambda: runner.synthesize(requests, cancels), cancels,
                                         leaving=cancels[:1], started_after=5)
    assert after["steps"] - after["steps_at_cancel"] > 20  # the batch ran on for the request still there
    assert len(clips[1]) > 0
    cancels = [Cancel(runner.progress), Cancel(runner.progress)]
    clips, before, after = cancel_midway(runner, lambda: runner.synthesize(requests, cancels), cancels,
                                         leaving=cancels, started_after=5)
    assert after["steps"] - after["steps_at_cancel"] <= STEPS_AFTER_CANCEL
    assert after["steps"] - before["steps"] < 300
