"""MusicRunner on a tiny random-weight Stable Audio pipeline: shapes, rates, seeding, validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from mmserve.errors import ConfigError, InvalidInput
from mmserve.media import encode_wav
from mmserve.protocol.music import MusicRequest
from mmserve.runners.stable_audio import MusicArgs, MusicRunner
from mmserve.tiny import stable_audio


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> MusicRunner:
    folder = stable_audio.build(tmp_path_factory.mktemp("stable_audio"))
    return MusicRunner(MusicArgs(model=str(folder), device="cpu", default_steps=4))


def test_loads_model_facts(runner):
    assert runner.sample_rate == stable_audio.SAMPLE_RATE
    assert runner.channels == 2
    window = stable_audio.LATENT_FRAMES * int(np.prod(stable_audio.DOWNSAMPLING)) / stable_audio.SAMPLE_RATE
    assert runner.max_duration_s == pytest.approx(min(47.0, window))


CLIP = MusicRequest(prompt="lofi piano", duration_s=1.5, steps=3, seed=1234)


@pytest.fixture(scope="module")
def clip(runner) -> np.ndarray:
    return runner.generate(CLIP)


def test_generate_shape_and_dtype(runner, clip):
    assert clip.dtype == np.float32
    assert clip.shape == (runner.channels, int(CLIP.duration_s * runner.sample_rate))
    assert np.isfinite(clip).all()
    assert np.abs(clip).max() > 0


def test_seeded_generation_is_deterministic(runner, clip):
    np.testing.assert_array_equal(runner.generate(CLIP), clip)
    assert not np.array_equal(runner.generate(CLIP.model_copy(update={"seed": 99})), clip)


def test_negative_prompt_and_no_guidance(runner):
    req = MusicRequest(prompt="rain", negative_prompt="drums", duration_s=1.0, steps=2, seed=0)
    assert runner.generate(req).shape == (runner.channels, runner.sample_rate)
    req = MusicRequest(prompt="rain", duration_s=1.0, steps=2, guidance_scale=1.0, seed=0)
    assert np.isfinite(runner.generate(req)).all()


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"duration_s": 1000.0}, "duration_s"),
        ({"steps": 0}, "steps"),
        ({"steps": 10_000}, "steps"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_inputs_are_rejected(runner, update, field):
    req = MusicRequest(prompt="birds at dawn", duration_s=1.0, steps=2).model_copy(update=update)
    with pytest.raises(InvalidInput) as info:
        runner.generate(req)
    assert info.value.field == field


def test_duration_above_model_window_is_rejected(runner):
    with pytest.raises(InvalidInput, match="duration_s"):
        runner.generate(MusicRequest(prompt="drone", duration_s=runner.max_duration_s + 0.5, steps=2))


def test_wav_round_trip(runner, clip):
    wav = encode_wav(clip.T, runner.sample_rate)  # soundfile wants (samples, channels)
    decoded, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    assert rate == runner.sample_rate
    assert decoded.shape == clip.T.shape
    np.testing.assert_allclose(decoded.T, np.clip(clip, -1, 1), atol=1 / 2**14)


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        MusicRunner(MusicArgs(model=str(tmp_path / "nope"), device="cpu"))
    assert info.value.field == "model"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_gpu_matches_shape(runner, tmp_path):
    gpu = MusicRunner(MusicArgs(model=runner.args.model, device="cuda", dtype="float16", default_steps=4))
    audio = gpu.generate(MusicRequest(prompt="strings", duration_s=1.0, seed=5))
    assert audio.dtype == np.float32
    assert audio.shape == (gpu.channels, gpu.sample_rate)
    assert np.isfinite(audio).all()
