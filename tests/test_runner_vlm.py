"""VLM runner on tiny random-weight InternVL and LLaVA folders: structure, limits, streaming."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from mmserve.errors import ConfigError, InvalidInput, PayloadTooLarge
from mmserve.protocol.vlm import VlmRequest, VlmResult
from mmserve.runners.vlm import VlmArgs, VlmRunner
from mmserve.tiny import internvl, llava

BUILDERS = {"internvl": internvl.build, "llava": llava.build}


def _image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def runners(model_dirs):
    return {name: VlmRunner(VlmArgs(model=str(path), device="cpu", max_images=2)) for name, path in model_dirs.items()}


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("n_images", [0, 1, 2])
def test_answer_structure(runners, name, n_images):
    runner = runners[name]
    images = [_image(64, 40, 1), _image(32, 32, 2)][:n_images]
    base = runner.answer(VlmRequest(question="What is in the picture?", max_new_tokens=8))
    result = runner.answer(VlmRequest(question="What is in the picture?", images=images, max_new_tokens=8))
    assert isinstance(result, VlmResult)
    assert isinstance(result.text, str)
    assert 0 <= result.completion_tokens <= 8
    assert result.finish_reason in ("stop", "length")
    if result.finish_reason == "length":
        assert result.completion_tokens == 8
    # Every image adds its placeholder tokens to the prompt.
    if n_images:
        assert result.prompt_tokens > base.prompt_tokens + 4 * n_images
    else:
        assert result.prompt_tokens == base.prompt_tokens


@pytest.mark.parametrize("name", BUILDERS)
def test_seeded_sampling_repeats(runners, name):
    req = VlmRequest(question="Describe it.", images=[_image(32, 32, 3)], max_new_tokens=6, temperature=1.0, seed=7)
    assert runners[name].answer(req) == runners[name].answer(req)


@pytest.mark.parametrize("name", BUILDERS)
def test_stream_yields_deltas_before_the_end(runners, name):
    req = VlmRequest(question="Describe it.", images=[_image(48, 32, 4)], max_new_tokens=24, temperature=1.0, seed=1)
    arrivals = []
    deltas = []
    start = time.perf_counter()
    for delta in runners[name].stream(req):
        arrivals.append(time.perf_counter() - start)
        deltas.append(delta)
    assert len(deltas) > 1
    assert all(isinstance(d, str) and d for d in deltas)
    assert arrivals[0] < arrivals[-1]


def test_stream_can_be_abandoned(runners):
    stream = runners["internvl"].stream(VlmRequest(question="Go on.", max_new_tokens=400, temperature=1.0, seed=2))
    next(stream)
    stream.close()  # stops generation and releases the lock for the next request
    assert runners["internvl"].answer(VlmRequest(question="Hi", max_new_tokens=2)).completion_tokens <= 2


def test_max_new_tokens_is_capped(model_dirs):
    runner = VlmRunner(VlmArgs(model=str(model_dirs["llava"]), device="cpu", max_new_tokens=3))
    result = runner.answer(VlmRequest(question="Hi", max_new_tokens=50))
    assert result.completion_tokens <= 3


@pytest.mark.parametrize(
    "req, field",
    [
        (VlmRequest(question=""), "question"),
        (VlmRequest(question="   ", images=[_image(32, 32, 0)]), "question"),
        (VlmRequest(question="Which?", images=[_image(32, 32, i) for i in range(3)]), "images"),
        (VlmRequest(question="Which?", images=["not an image"]), "images"),
        (VlmRequest(question="Which?", max_new_tokens=0), "max_new_tokens"),
        (VlmRequest(question="Which?", temperature=3.0), "temperature"),
        (VlmRequest(question="Which?", top_p=0.0), "top_p"),
    ],
)
def test_invalid_requests(runners, req, field):
    with pytest.raises(InvalidInput) as err:
        runners["internvl"].answer(req)
    assert err.value.field == field
    with pytest.raises(InvalidInput):  # streaming validates eagerly, before the first next()
        runners["internvl"].stream(req)


def test_image_limits(model_dirs):
    runner = VlmRunner(
        VlmArgs(model=str(model_dirs["llava"]), device="cpu", max_image_pixels=32 * 32, allow_text_only=False)
    )
    with pytest.raises(PayloadTooLarge) as err:
        runner.answer(VlmRequest(question="Big?", images=[_image(64, 64, 0)]))
    assert err.value.field == "images"
    with pytest.raises(InvalidInput) as err:
        runner.answer(VlmRequest(question="No image?"))
    assert err.value.field == "images"


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        VlmRunner(VlmArgs(model=str(tmp_path / "nope"), device="cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusals")
@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantization_without_cuda_is_a_config_error(model_dirs, quantization):
    with pytest.raises(ConfigError) as err:
        VlmRunner(VlmArgs(model=str(model_dirs["internvl"]), quantization=quantization))
    assert err.value.field == "quantization"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusals")
def test_lmdeploy_without_cuda_is_a_config_error(model_dirs):
    with pytest.raises(ConfigError) as err:
        VlmRunner(VlmArgs(model=str(model_dirs["internvl"]), family="lmdeploy-vlm"))
    assert "CUDA" in err.value.message


def test_args_reject_unknown_fields():
    with pytest.raises(ValueError):
        VlmArgs(model="x", family="vllm")
    with pytest.raises(ValueError):
        VlmArgs(model="x", max_image=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="lmdeploy needs a CUDA GPU")
@pytest.mark.parametrize("engine", ["turbomind", "pytorch"])
def test_lmdeploy_backend_on_gpu(model_dirs, engine):
    pytest.importorskip("lmdeploy")
    runner = VlmRunner(
        VlmArgs(
            model=str(model_dirs["internvl"]),
            family="lmdeploy-vlm",
            lmdeploy_engine=engine,
            session_len=2048,
            cache_max_entry_count=0.05,
        )
    )
    try:
        images = [_image(64, 40, 1), _image(32, 32, 2)]
        result = runner.answer(VlmRequest(question="What is in the pictures?", images=images, max_new_tokens=8))
        assert isinstance(result.text, str)
        assert result.prompt_tokens > 8 and 0 <= result.completion_tokens <= 8
        assert result.finish_reason in ("stop", "length")
        req = VlmRequest(question="Describe it.", images=images[:1], max_new_tokens=16, temperature=1.0, seed=1)
        deltas = list(runner.stream(req))
        assert all(isinstance(d, str) for d in deltas)
    finally:
        runner.close()
