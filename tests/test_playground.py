"""The /playground page in real headless Chromium against the real local stack.

The browser's microphone is Chromium's fake capture device playing tests/data/speech_en.wav, so the
page's own capture, encoding and upload are what the server hears; Whisper tiny.en (real weights)
makes the spoken words checkable. Screenshots of each tab go to $MMSERVE_TEST_ARTIFACTS/playground
(or a tmp dir), each path printed (`-s`). MMSERVE_PLAYGROUND_URL runs the tab tests against a server
already up (e.g. `serve run configs/local.yaml`) instead of starting the local stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
from PIL import Image
from ray import serve

from gateway.ingress import Gateway
from graphs.app import model_specs
from mmserve.config import DeploymentArgs
from mmserve.config.app import load_app_args
from tests.conftest import LOCAL_CONFIG
from tests.helpers import SPEECH_EN

CHROMIUM = Path("/usr/bin/chromium")
MODEL_WAIT_MS = 240_000  # first calls of each tiny model on a shared 2-core machine
KEY = "sk-playground"


def need(ok: bool, why: str):
    """Skip without the browser on a developer's machine; in CI it must be there."""
    if not ok:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("MMSERVE_TEST_ARTIFACTS")
    path = Path(root) / "playground" if root else tmp_path_factory.mktemp("playground-screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory) -> Path:
    """speech_en.wav as Chromium's fake capture plays it: 48 kHz 16-bit mono, with silence before and
    after (the realtime VAD needs the trailing silence to end the turn)."""
    rate = 48000
    speech, source_rate = sf.read(SPEECH_EN, dtype="float32")

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(rate * seconds), np.float32)

    path = tmp_path_factory.mktemp("mic") / "speech_en_48k.wav"
    audio = np.concatenate([silence(0.5), soxr.resample(speech, source_rate, rate), silence(3.0)])
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory, fake_mic):
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package is missing (pip install playwright)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_mic}%noloop"]  # each capture plays it once, from the start
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=args, viewport={"width": 1100, "height": 800})
        yield context
        context.close()


class Playground:
    """One open page, with what it logged, and waits that fail with the tab's own error message."""

    def __init__(self, context, url: str, artifacts: Path):
        self.page = context.new_page()
        self.artifacts = artifacts
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", lambda msg: msg.type == "error" and self.problems.append(f"console: {msg.text}"))
        self.page.goto(url)

    def tab(self, name: str):
        self.page.click(f"#tabs button[data-tab={name}]")

    def js(self, expression: str):
        return self.page.evaluate(expression)

    def wait(self, tab: str, done: str, timeout_ms: int = MODEL_WAIT_MS):
        """Wait until the JS expression `done` holds or the tab shows an error; fail with that error."""
        status = f"document.getElementById('{tab}-status')"
        self.page.wait_for_function(f"({done}) || {status}.classList.contains('error')", timeout=timeout_ms)
        assert not self.js(f"{status}.classList.contains('error')"), \
            f"{tab}: {self.js(f'{status}.textContent')}; {self.problems}"

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="module")
def server(request) -> str:
    return os.environ.get("MMSERVE_PLAYGROUND_URL") or request.getfixturevalue("local_stack")


@pytest.fixture(scope="module")
def playground(browser, server, artifacts):
    pg = Playground(browser, server + "/playground", artifacts)
    pg.page.wait_for_function("document.getElementById('models-status').textContent.endsWith(' served')")
    yield pg
    pg.page.close()


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A small picture to upload (the local config's smallest allowed side is 64)."""
    pixels = np.zeros((96, 96, 3), np.uint8)
    pixels[:, :, 0] = np.linspace(0, 255, 96, dtype=np.uint8)
    pixels[24:72, 24:72] = (30, 160, 60)
    path = tmp_path_factory.mktemp("images") / "square.png"
    Image.fromarray(pixels).save(path)
    return path


def audio_seconds(pg: Playground, element: str) -> float:
    return pg.js(f"document.getElementById('{element}').duration")


def test_speak_to_picture_records_the_microphone(playground):
    pg = playground
    pg.tab("speak")
    pg.page.select_option("#speak-asr", "whisper-tiny")  # real weights: the spoken words can be checked
    pg.page.uncheck("#speak-rewrite")
    pg.page.click("#speak-record")
    spoken_s = sf.info(SPEECH_EN).duration + 1.0  # the fake mic's lead-in silence, the speech, some silence
    pg.page.wait_for_function(f"parseFloat(document.getElementById('speak-seconds').textContent) >= {spoken_s}",
                              timeout=60_000)
    pg.page.click("#speak-stop")
    pg.wait("speak", "document.getElementById('speak-image').naturalWidth > 0")
    transcript = pg.page.inner_text("#speak-transcript")
    assert "cat" in transcript.lower() and "sea" in transcript.lower(), transcript
    assert pg.page.inner_text("#speak-prompt").strip() == transcript.strip()  # rewrite off
    assert pg.js("document.getElementById('speak-image').naturalWidth") == 128  # configs/local.yaml default
    pg.screenshot("1-speak-to-picture")


def test_describe_aloud_plays_the_answer(playground, picture):
    pg = playground
    pg.tab("describe")
    pg.page.set_input_files("#describe-image", picture)
    pg.page.fill("#describe-question", "What colour is the square?")
    pg.page.click("#describe-go")
    pg.wait("describe", "document.getElementById('describe-audio').currentTime > 0")
    assert pg.page.inner_text("#describe-text").strip()
    assert audio_seconds(pg, "describe-audio") > 0
    pg.screenshot("3-describe-aloud")


def test_speech_synthesis_streams_into_the_audio_element(playground):
    pg = playground
    pg.tab("tts")
    pg.page.fill("#tts-input", "Hello from the playground test.")
    pg.page.click("#tts-go")
    pg.wait("tts", "document.getElementById('tts-audio').duration > 0")
    received = int(pg.page.inner_text("#tts-bytes"))
    assert received > 0 and received % 2 == 0
    # the replayable WAV holds every byte streamed, at the rate the server sent (ChatTTS: 24 kHz)
    size, data_size, rate = pg.js("""(async () => {
        const wav = await (await fetch(document.getElementById('tts-audio').src)).arrayBuffer();
        const header = new DataView(wav);
        return [wav.byteLength, header.getUint32(40, true), header.getUint32(24, true)];
    })()""")
    assert (size, data_size, rate) == (44 + received, received, 24000)
    assert "first audio after" in pg.page.inner_text("#tts-status")
    pg.screenshot("4-speech-synthesis")


def test_chat_with_an_image_streams_a_reply(playground, picture):
    pg = playground
    pg.tab("chat")
    pg.page.set_input_files("#chat-image", picture)
    pg.page.click("#chat-go")
    pg.wait("chat", "document.getElementById('chat-status').textContent.startsWith('answered by')")
    assert pg.page.inner_text("#chat-status") == "answered by internvl (streamed)"  # the default VLM
    assert pg.page.inner_text("#chat-reply").strip()
    pg.screenshot("5-chat-with-an-image")


def test_talk_realtime_hears_and_answers_aloud(playground):
    pg = playground
    pg.tab("talk")
    pg.page.click("#talk-start")  # the default speech model: its streaming VAD finds the turn
    pg.wait("talk", "document.querySelector('#talk-log .error') || (document.querySelector('#talk-log .user') && "
            "parseFloat(document.getElementById('talk-played').textContent) > 0)")
    log = pg.page.inner_text("#talk-log")
    assert not pg.page.query_selector("#talk-log .error"), log
    assert "speech started at" in log and "speech stopped at" in log, log  # the server's turn detection
    assert pg.page.inner_text("#talk-log .user").strip()  # the tiny recognizer's words are noise
    assert pg.page.inner_text("#talk-log .assistant").strip()
    assert int(pg.page.inner_text("#talk-bytes")) > 0
    assert pg.js("document.getElementById('talk-audio').srcObject.getAudioTracks().length") == 1
    pg.screenshot("2-talk-realtime")
    pg.page.click("#talk-stop")


def test_live_captions_show_partials_then_the_final_text(playground):
    """The captions tab: the streaming model's partial text while the fake mic speaks, then the line
    turns into the speech model's final text."""
    pg = playground
    pg.tab("captions")
    pg.page.click("#captions-start")
    pg.wait("captions", "document.querySelector('#captions-log .error') || "
            "document.querySelector('#captions-log .partial')?.textContent.trim()")
    assert not pg.page.query_selector("#captions-log .error"), pg.page.inner_text("#captions-log")
    partial = pg.page.inner_text("#captions-log .partial").strip()
    pg.wait("captions", "document.querySelector('#captions-log .error') || document.querySelector('#captions-log .user')")
    assert not pg.page.query_selector("#captions-log .error"), pg.page.inner_text("#captions-log")
    final = pg.page.inner_text("#captions-log .user").strip()
    assert final and final != partial  # the second pass: another model's text (tiny: both are noise)
    pg.screenshot("2b-live-captions")
    pg.page.click("#captions-stop")


# ------------------------------------------------------------------ with API keys on
@pytest.fixture(scope="module")
def keyed_gateway(request):
    """A second gateway, with an API key, over the local stack's model replicas (no new model replica)."""
    if os.environ.get("MMSERVE_PLAYGROUND_URL"):
        pytest.skip("needs the test's own local stack")
    stack = request.getfixturevalue("local_stack")
    args = load_app_args(LOCAL_CONFIG)
    models = model_specs(args, lambda m: serve.get_deployment_handle(m.name, "mmserve"))
    gateway = args.gateway.model_copy(update={"api_keys": [KEY], "deployment": DeploymentArgs(num_cpus=0)})
    serve.run(Gateway.options(name="gateway").bind(gateway, models, args.served_flows()), name="playground-keys",
              route_prefix="/keyed")
    yield stack + "/keyed"
    serve.delete("playground-keys")


def test_page_loads_without_a_key_and_calls_with_it(browser, keyed_gateway, artifacts):
    for path in ["/playground", "/playground/app.js", "/playground/audio.js", "/playground/capture-worklet.js"]:
        assert httpx.get(keyed_gateway + path).status_code == 200, path
    assert httpx.get(keyed_gateway + "/v1/models").status_code == 401
    pg = Playground(browser, keyed_gateway + "/playground", artifacts)
    pg.page.wait_for_function("document.getElementById('models-status').classList.contains('error')")
    assert "401" in pg.page.inner_text("#models-status")

    pg.tab("talk")  # a wrong key: the realtime handshake carries it as a subprotocol, and is refused
    pg.page.fill("#api-key", "sk-wrong")
    pg.page.click("#talk-start")
    pg.page.wait_for_function("document.getElementById('talk-status').classList.contains('error')")
    assert "invalid_api_key" in pg.page.inner_text("#talk-log"), pg.page.inner_text("#talk-log")

    pg.page.fill("#api-key", KEY)
    pg.page.press("#api-key", "Enter")  # the models load again, with the key
    pg.page.wait_for_function("document.getElementById('models-status').textContent.endsWith(' served')")
    pg.page.click("#talk-start")
    pg.wait("talk", "document.querySelector('#talk-log .error') || (document.querySelector('#talk-log .user') && "
            "parseFloat(document.getElementById('talk-played').textContent) > 0)")
    assert not pg.page.query_selector("#talk-log .error"), pg.page.inner_text("#talk-log")
    pg.page.click("#talk-stop")

    pg.tab("chat")
    pg.page.select_option("#chat-model", "qwen-poet")  # a LoRA adapter, listed with its base model
    pg.page.fill("#chat-input", "Say hello.")
    pg.page.click("#chat-go")
    pg.wait("chat", "document.getElementById('chat-status').textContent.startsWith('answered by')")
    assert pg.page.inner_text("#chat-status") == "answered by qwen-poet (streamed)"
    pg.screenshot("6-with-api-key")
    pg.page.close()
