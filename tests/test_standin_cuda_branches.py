"""mmserve's GPU-only branches, run on CPU through stand-ins for the library entry points that need a GPU.

`tests/standins/` replaces torch.cuda's memory and RNG calls, loading onto a GPU (device maps,
bitsandbytes) and diffusers' placement with functions of the real signatures that check arguments
as the libraries do, record them, and keep the weights on the CPU. Not a substitute for a real GPU
(`bench/gpu/check.sh`): it keeps these branches from rotting between GPU runs.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import deployments.common as common
import mmserve.quantization
from mmserve.catalog import ModelArgs
from mmserve.devices import cap_gpu_memory, check_device, resolve_device, resolve_dtype
from mmserve.protocol.image import ImageRequest
from mmserve.protocol.llm import ChatMessage, GenerationParams
from mmserve.protocol.music import MusicRequest
from mmserve.protocol.vlm import VlmRequest
from mmserve.runners.llm import LlmArgs, LlmRunner
from mmserve.runners.sd3 import ImageArgs, ImageRunner
from mmserve.runners.stable_audio import MusicArgs, MusicRunner
from mmserve.runners.vlm import VlmArgs, VlmRunner
from tests.standins.cuda import FakeGpu
from tests.standins.hf import GpuLoading

HELLO = [ChatMessage(role="user", content="hello")]


@pytest.fixture
def gpu(monkeypatch) -> FakeGpu:
    return FakeGpu(count=2).install(monkeypatch)


@pytest.fixture
def loading(gpu, monkeypatch) -> GpuLoading:
    from diffusers import StableAudioPipeline, StableDiffusion3Pipeline
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    stand_in = GpuLoading().install_transformers(monkeypatch, AutoModelForCausalLM, AutoModelForImageTextToText)
    return stand_in.install_diffusers(monkeypatch, StableDiffusion3Pipeline, StableAudioPipeline)


# --- device selection and the per-replica memory cap ---------------------------------------------


@pytest.mark.parametrize("device, index", [("cuda", 0), ("cuda:1", 1)])
def test_memory_cap_is_set_on_an_indexed_device(gpu, device, index):
    assert cap_gpu_memory(0.3, device) == 0.3
    assert gpu.memory_fraction == {index: 0.3}


def test_a_whole_gpu_share_caps_at_the_whole_device(gpu):
    assert cap_gpu_memory(2, "cuda") == 1.0 and gpu.memory_fraction == {0: 1.0}


def test_replica_start_caps_memory_to_its_ray_share_and_health_checks_the_device(gpu, monkeypatch):
    monkeypatch.setattr(common, "assigned_gpu_fraction", lambda: 0.22)
    assert common.prepare_replica("auto") == "cuda"
    assert gpu.memory_fraction == {0: 0.22}
    check_device("cuda")
    assert gpu.called("mem_get_info") == [(0,)]


def test_a_gpu_index_the_replica_cannot_see_is_a_config_error(monkeypatch):
    from mmserve.errors import ConfigError

    FakeGpu(count=1).install(monkeypatch)  # what Ray's CUDA_VISIBLE_DEVICES leaves a num_gpus <= 1 replica
    with pytest.raises(ConfigError, match="not visible") as err:
        resolve_device("cuda:1")
    assert err.value.field == "device"


def test_auto_picks_cuda_and_half_precision(gpu):
    assert resolve_device("auto") == "cuda"
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16", "cuda:0") == torch.bfloat16


# --- loading onto the GPU -------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_sd3_bitsandbytes_quantizes_the_transformer_and_t5(tiny_models, loading, quantization):
    runner = ImageRunner(ImageArgs(model=str(tiny_models / "sd3"), device="cuda", quantization=quantization))
    (load,) = loading.called("StableDiffusion3Pipeline.from_pretrained")
    mapping = load["quantization_config"].quant_mapping
    assert set(mapping) == {"transformer", "text_encoder_3"}
    assert all(getattr(config, f"load_in_{quantization}") for config in mapping.values())
    assert load["dtype"] == torch.float16  # what the runner asks for on a GPU (the stand-in loads float32 on CPU)
    assert [call.get("device", args) for what, args, call in loading.calls if what == "pipeline.to"] == [("cuda",)]
    assert runner.pipe.vae.use_slicing
    [[image]] = runner.generate([ImageRequest(prompt="fox", width=64, height=64, num_inference_steps=2, seed=1)])
    assert image.size == (64, 64)


def test_sd3_cpu_offload_is_never_combined_with_a_move_to_the_gpu(tiny_models, loading):
    ImageRunner(ImageArgs(model=str(tiny_models / "sd3"), device="cuda", cpu_offload=True, drop_t5=True))
    assert loading.called("enable_model_cpu_offload") == [{"gpu_id": None, "device": "cuda"}]
    assert not [args for what, args, _ in loading.calls if what == "pipeline.to"]


def test_music_moves_its_pipeline_to_the_gpu(tiny_models, loading):
    runner = MusicRunner(MusicArgs(model=str(tiny_models / "stable_audio"), device="cuda", default_steps=2))
    assert [args for what, args, _ in loading.calls if what == "pipeline.to"] == [("cuda",)]
    assert runner.generate(MusicRequest(prompt="drums", duration_s=0.5, seed=0)).shape[0] == runner.channels


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_llm_loads_onto_the_gpu_with_a_device_map(tiny_models, loading, gpu, quantization):
    runner = LlmRunner(LlmArgs(model=str(tiny_models / "qwen"), device="auto", quantization=quantization,
                               max_new_tokens=4))
    (load,) = loading.called("AutoModelForCausalLM.from_pretrained")
    assert load["device_map"] == "cuda"
    config = load["quantization_config"]
    assert (config is None) == (quantization == "none")
    if config is not None:
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
        assert config.bnb_4bit_compute_dtype == torch.float16
    seeded = GenerationParams(max_new_tokens=4, seed=3)
    assert runner.chat(HELLO, seeded) == runner.chat(HELLO, seeded)
    assert gpu.called("get_rng_state") and gpu.called("set_rng_state")  # seeding forks the GPU's RNG too


@pytest.mark.parametrize("quantization", ["none", "8bit"])
def test_vlm_loads_onto_the_gpu_with_a_device_map_never_moved_after(tiny_models, loading, quantization):
    runner = VlmRunner(VlmArgs(model=str(tiny_models / "internvl"), device="cuda", quantization=quantization,
                               max_new_tokens=3))
    (load,) = loading.called("AutoModelForImageTextToText.from_pretrained")
    assert load["device_map"] == {"": "cuda"}
    assert (load.get("quantization_config") is not None) == (quantization == "8bit")
    assert runner.answer(VlmRequest(question="what is it?", max_new_tokens=2)).completion_tokens <= 2


def test_quantization_without_bitsandbytes_is_a_config_error(tiny_models, gpu, monkeypatch):
    from mmserve.errors import ConfigError

    monkeypatch.setattr(mmserve.quantization, "bitsandbytes_installed", lambda: False)
    with pytest.raises(ConfigError, match="bitsandbytes") as err:
        LlmRunner(LlmArgs(model=str(tiny_models / "qwen"), device="cuda", quantization="8bit"))
    assert err.value.field == "quantization"


# --- config checks that protect GPU replicas ------------------------------------------------------


def test_tensor_parallel_needs_that_many_whole_gpus():
    runner = {"model": "Qwen/Qwen2.5-72B-Instruct", "family": "lmdeploy-llm", "tp": 2}
    with pytest.raises(ValidationError, match="num_gpus: 2"):
        ModelArgs(name="m", runner=runner, deployment={"num_gpus": 0.5})
    with pytest.raises(ValidationError, match="turbomind"):
        ModelArgs(name="m", runner={**runner, "lmdeploy_engine": "pytorch"}, deployment={"num_gpus": 2})
    assert ModelArgs(name="m", runner=runner, deployment={"num_gpus": 2}).runner.tp == 2


def test_asr_threads_may_not_exceed_the_replica_cpus():
    runner = {"family": "funasr-paraformer", "model": "iic/paraformer", "ncpu": 4}
    with pytest.raises(ValidationError, match="model 'm': runner.ncpu=4"):
        ModelArgs(name="m", runner=runner, deployment={"num_cpus": 2})
    assert ModelArgs(name="m", runner={**runner, "ncpu": 2}, deployment={"num_cpus": 2})


@pytest.mark.parametrize("args_type", [ImageArgs, MusicArgs, LlmArgs, VlmArgs])
def test_a_dtype_typo_fails_config_validation(args_type):
    with pytest.raises(ValidationError, match="dtype"):
        args_type(model="m", dtype="fp16")


def test_asking_for_the_ray_share_outside_ray_starts_no_ray():
    """Runners also run without Ray (benchmarks, the GPU check): asking must not start a local cluster."""
    import subprocess
    import sys

    code = ("import ray; from deployments.common import assigned_gpu_fraction; "
            "print(assigned_gpu_fraction(), ray.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["None", "False"]


def test_asking_for_the_ray_share_from_a_ray_driver_is_none():
    import subprocess
    import sys

    code = ("import ray; ray.init(num_cpus=1, include_dashboard=False); from deployments.common import "
            "assigned_gpu_fraction; print(assigned_gpu_fraction()); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    assert out.stdout.split()[-1] == "None"
