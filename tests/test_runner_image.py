"""SD3 text-to-image runner on a tiny random-weight SD3 pipeline (outputs are noise: check structure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.image import ImageRequest
from mmserve.runners.sd3 import ImageArgs, ImageRunner
from mmserve.tiny import sd3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return sd3.build(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def runner(model_dir):
    return ImageRunner(ImageArgs(model=str(model_dir), device="cpu", default_steps=3))


def req(prompt="a red fox", width=128, height=128, **kw) -> ImageRequest:
    return ImageRequest(prompt=prompt, width=width, height=height, **kw)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_one_image(runner):
    [[image]] = runner.generate([req(seed=0)])
    assert isinstance(image, Image.Image)
    assert image.size == (128, 128)
    assert image.mode == "RGB"


def test_batch_groups_compatible_requests_and_keeps_order(runner, monkeypatch):
    calls = []
    pipe = runner.pipe

    def spy(**kwargs):
        calls.append((kwargs["width"], kwargs["height"], len(kwargs["prompt"])))
        return pipe(**kwargs)

    monkeypatch.setattr(runner, "pipe", spy)
    out = runner.generate([req(num_images=2), req(width=192, height=64), req(prompt="a blue bird")])
    assert [len(images) for images in out] == [2, 1, 1]
    assert [[im.size for im in images] for images in out] == [[(128, 128)] * 2, [(192, 64)], [(128, 128)]]
    assert sorted(calls) == [(128, 128, 3), (192, 64, 1)]  # two pipeline calls, not three


def test_a_batch_runs_as_calls_of_at_most_max_images_per_call(runner, monkeypatch):
    """Activation memory grows with the images in one call: a 2 x 4-image batch must not be one call of 8."""
    calls, pipe = [], runner.pipe

    def spy(**kwargs):
        calls.append(len(kwargs["prompt"]))
        return pipe(**kwargs)

    monkeypatch.setattr(runner, "pipe", spy)
    monkeypatch.setattr(runner, "args", runner.args.model_copy(update={"max_images_per_call": 3}))
    out = runner.generate([req(num_images=4, seed=1), req(num_images=3, seed=9)])
    assert [len(images) for images in out] == [4, 3]
    assert calls == [3, 3, 1]


def test_vae_decodes_one_image_at_a_time(runner):
    assert runner.pipe.vae.use_slicing


def test_seed_gives_same_images_alone_and_batched(runner):
    seeded = req(seed=1234, num_images=2)
    [alone] = runner.generate([seeded])
    [again] = runner.generate([seeded])
    batched = runner.generate([req(prompt="other", seed=7), seeded, req(prompt="third")])[1]
    assert len(alone) == len(batched) == 2
    for a, b, c in zip(alone, again, batched):
        assert np.array_equal(pixels(a), pixels(b))
        # Batched CPU kernels round differently in the last float bits: at most one 8-bit level.
        diff = np.abs(pixels(a) - pixels(c))
        assert diff.max() <= 2 and diff.mean() < 0.05
    # The two images of one request use different seeds, and another seed gives other pixels.
    assert np.abs(pixels(alone[0]) - pixels(alone[1])).mean() > 5
    [[other]] = runner.generate([req(seed=1235)])
    assert not np.array_equal(pixels(other), pixels(alone[0]))


def test_drop_t5(model_dir):
    runner = ImageRunner(ImageArgs(model=str(model_dir), device="cpu", drop_t5=True, default_steps=2))
    assert runner.pipe.text_encoder_3 is None
    [[image]] = runner.generate([req(width=64, height=96)])
    assert image.size == (64, 96)


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"width": 100}, "width"),
        ({"height": 0}, "height"),
        ({"num_images": 0}, "num_images"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_request(runner, bad, field):
    with pytest.raises(InvalidInput) as err:
        runner.generate([req(), req(**bad)])
    assert err.value.field == field


@pytest.mark.parametrize("config,field", [({"quantization": "8bit"}, "quantization"), ({"cpu_offload": True}, "cpu_offload")])
def test_gpu_only_options_refused_on_cpu(config, field):
    # A missing folder proves the check runs before anything is loaded.
    with pytest.raises(ConfigError) as err:
        ImageRunner(ImageArgs(model="/nonexistent/sd3", device="cpu", **config))
    assert err.value.field == field


def test_missing_model_folder():
    with pytest.raises(ConfigError) as err:
        ImageRunner(ImageArgs(model="/nonexistent/sd3", device="cpu"))
    assert err.value.field == "model"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and bitsandbytes")
def test_8bit_on_cuda(model_dir):
    runner = ImageRunner(ImageArgs(model=str(model_dir), device="cuda", quantization="8bit", default_steps=4))
    assert runner.pipe.transformer.is_loaded_in_8bit and runner.pipe.text_encoder_3.is_loaded_in_8bit
    out = runner.generate([req(seed=0, num_images=2), req(width=256)])
    assert [[im.size for im in images] for images in out] == [[(128, 128)] * 2, [(256, 128)]]
