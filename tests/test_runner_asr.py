"""ASR runner on tiny random-weight SeACo-Paraformer + FSMN-VAD + CT-Punc folders.

Text is noise (possibly empty); the tests check structure: types, durations, timestamps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from mmserve.errors import ConfigError, InvalidInput
from mmserve.media import decode_audio
from mmserve.protocol.asr import Transcript
from mmserve.runners.paraformer import AsrArgs, AsrRunner
from mmserve.tiny import funasr as tiny_funasr
from tests.helpers import BAD_SPEECH_INPUTS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ESPEAK = shutil.which("espeak-ng") or ("/usr/bin/espeak-ng" if os.path.exists("/usr/bin/espeak-ng") else None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    t0 = time.perf_counter()
    root = tiny_funasr.build(tmp_path_factory.mktemp("funasr"))
    print(f"\ntiny FunASR build: {time.perf_counter() - t0:.2f} s")
    return root


@pytest.fixture(scope="module")
def runner(models):
    args = AsrArgs(
        model=str(models / "paraformer"),
        vad_model=str(models / "vad"),
        punc_model=str(models / "punc"),
        device="cpu",
        ncpu=torch.get_num_threads(),  # FunASR sets this process-wide: leave other tests' setting alone
    )
    return AsrRunner(args)


def _tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


def _check(out: Transcript, duration_s: float) -> None:
    assert isinstance(out, Transcript)
    assert isinstance(out.text, str)
    assert out.duration_s == pytest.approx(duration_s, abs=1e-3)
    if out.timestamps is None:
        return
    assert isinstance(out.timestamps, list)
    end_ms = duration_s * 1000
    for start, end in out.timestamps:
        assert type(start) is int and type(end) is int
        assert 0 <= start <= end <= end_ms
    starts = [s for s, _ in out.timestamps]
    assert starts == sorted(starts)


def test_folders_are_real_funasr_models(models):
    from funasr import AutoModel

    expected = {"paraformer": "SeacoParaformer", "vad": "FsmnVADStreaming", "punc": "CTTransformer"}
    for name, cls in expected.items():
        folder = models / name
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        assert cfg["model"] == cls
        assert json.loads((folder / "configuration.json").read_text())["file_path_metas"]["init_param"] == "model.pt"
        model, _ = AutoModel.build_model(model=str(folder), device="cpu", ncpu=torch.get_num_threads(), disable_update=True)
        assert type(model).__name__ == cls
        state = torch.load(folder / "model.pt", map_location="cpu")
        loaded = model.state_dict()
        assert set(state) == set(loaded)  # every saved key matches the rebuilt model
        assert all(torch.equal(state[k], loaded[k]) for k in state)  # and build_model loaded them
    punc_bias = torch.load(models / "punc" / "model.pt", map_location="cpu")["decoder.bias"]
    assert punc_bias[0] < -1e3  # the "<unk>" punctuation class is switched off
    # the streaming VAD needs the online frontend (the offline one fails at inference)
    vad_config = yaml.safe_load((models / "vad" / "config.yaml").read_text())
    assert vad_config["frontend"] == "WavFrontendOnline"
    # random weights: a level gate (FSMN-VAD's decibel check) decides, the silence class is biased away
    assert vad_config["model_conf"]["decibel_thres"] == tiny_funasr.TINY_VAD_DECIBEL_THRES > -100
    assert torch.load(models / "vad" / "model.pt", map_location="cpu")["encoder.out_linear2.linear.bias"][0] < -5
    tokens = json.loads((models / "paraformer" / "tokens.json").read_text(encoding="utf-8"))
    assert 100 < len(tokens) < 1000 and tokens[-1] == "<unk>"


def test_tone_gives_structured_transcript(runner):
    samples = _tone(2.0)
    t0 = time.perf_counter()
    out = runner.transcribe(samples)
    print(f"\ntranscribe 2 s (VAD + SeACo + punc, CPU): {time.perf_counter() - t0:.3f} s")
    _check(out, 2.0)
    assert out.timestamps is not None  # SeACo-Paraformer always reports per-token times


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
def test_spoken_wav(runner, tmp_path):
    wav = tmp_path / "say.wav"
    subprocess.run([ESPEAK, "-w", str(wav), "hello world, this is a speech recognition test"], check=True)
    audio = decode_audio(wav.read_bytes())  # espeak writes 22.05 kHz: decode_audio resamples
    assert audio.sample_rate == 16000
    out = runner.transcribe(audio.samples, audio.sample_rate, hotwords=["你好", "hello"])
    _check(out, audio.duration_s)


def test_hotwords_do_not_leak_into_the_next_call(runner):
    a, b = _tone(1.0), _tone(1.5)
    plain = runner.transcribe(a)
    _check(runner.transcribe(b, hotwords=["世界", "ray", "speech"]), 1.5)
    _check(plain, 1.0)
    assert runner.transcribe(a).text == plain.text


def test_the_shortest_audio_accepted_is_transcribed(runner):
    """0.1 s (MIN_AUDIO_S) is taken; 1599 samples are refused (BAD_SPEECH_INPUTS below)."""
    out = runner.transcribe(np.zeros(1600, dtype=np.float32))
    assert out.text == "" and out.duration_s == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, field",
    [*BAD_SPEECH_INPUTS, ({"hotwords": ["http://example.com/hot"]}, "hotwords"),
     ({"hotwords": ["words.txt"]}, "hotwords")],
)
def test_bad_input(runner, kwargs, field):
    call = {"samples": _tone(0.5), "sample_rate": 16000, "hotwords": None, **kwargs}
    with pytest.raises(InvalidInput) as err:
        runner.transcribe(**call)
    assert err.value.field == field


def test_missing_folder_is_config_error(tmp_path):
    with pytest.raises(ConfigError):
        AsrRunner(AsrArgs(model=str(tmp_path / "absent"), device="cpu"))
