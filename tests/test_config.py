"""serve_config.yaml parses into the builder's args and schedules on logical GPUs as written."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError
from ray import serve

from graphs.app import AppArgs, build_app, load_app_args
from mmserve.devices import memory_fraction_for
from tests.helpers import SPEECH_ZH, decode_b64_png

ROOT = Path(__file__).parents[1]
PROD = ROOT / "serve_config.yaml"
LOCAL = ROOT / "configs" / "local.yaml"
MODEL_DEPLOYMENTS = ("asr", "image", "llm", "tts", "vlm", "music")


def test_serve_config_gives_every_gpu_model_a_fraction_and_autoscaling():
    """Planned for one 80 GB GPU (tests/test_plan.py checks the memory): ASR runs on CPU there."""
    args = load_app_args(PROD)
    total = 0.0
    for name in MODEL_DEPLOYMENTS:
        deployment = getattr(args, name).deployment
        assert 0 < deployment.num_gpus <= 1 or name == "asr", name
        assert deployment.autoscaling is not None, name
        assert deployment.autoscaling.max_replicas >= deployment.autoscaling.min_replicas
        assert deployment.max_queued_requests > 0, f"{name} needs a bounded queue"
        total += deployment.num_gpus * deployment.autoscaling.max_replicas
    assert total <= 1.0, "every model at max_replicas should pack onto the one 80 GB GPU"
    assert args.asr.deployment.num_gpus == 0 and args.asr.runner.ncpu == args.asr.deployment.num_cpus
    assert args.music.deployment.autoscaling.min_replicas == 0, "rarely used music scales to zero"
    assert args.gateway.deployment.autoscaling is not None
    assert args.cluster is not None and args.cluster.gpu_memory_gb == 80


def test_serve_config_uses_the_app_builder_and_real_model_ids():
    config = yaml.safe_load(PROD.read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "graphs.app:build_app"
    args = load_app_args(PROD)
    assert args.image.runner.model == "stabilityai/stable-diffusion-3-medium-diffusers"
    assert "paraformer" in args.asr.runner.model
    assert config["http_options"]["request_timeout_s"] >= 60


def test_local_config_is_the_same_app_on_cpu():
    args = load_app_args(LOCAL)
    assert all(getattr(args, name).deployment.num_gpus == 0 for name in MODEL_DEPLOYMENTS)


def test_typos_in_config_are_errors_not_silently_ignored():
    raw = yaml.safe_load(PROD.read_text())["applications"][0]["args"]
    raw["image"]["deployment"]["num_gpu"] = 0.5
    with pytest.raises(ValidationError, match="num_gpu"):
        AppArgs.model_validate(raw)


def test_serve_options_carry_fraction_and_autoscaling():
    options = load_app_args(PROD).image.deployment.serve_options()
    assert options["num_replicas"] == "auto"
    assert options["ray_actor_options"]["num_gpus"] == 0.26
    assert options["autoscaling_config"]["max_replicas"] >= 1
    assert options["max_queued_requests"] > 0


@pytest.mark.parametrize("num_gpus,expected", [(0.35, 0.35), (1, 1.0), (2, 1.0), (0.05, 0.05)])
def test_memory_fraction_follows_the_ray_fraction(num_gpus, expected):
    assert memory_fraction_for(num_gpus) == expected


def test_memory_fraction_needs_a_positive_share():
    with pytest.raises(ValueError):
        memory_fraction_for(0)


def test_production_shaped_app_schedules_on_logical_gpus(ray_cluster):
    """serve_config.yaml's fractions, replicas and queues, with the tiny model folders swapped in."""
    args = load_app_args(PROD)
    args.asr.runner = args.asr.runner.model_copy(
        update={"model": "funasr/paraformer", "vad_model": "funasr/vad", "punc_model": "funasr/punc", "ncpu": 1})
    # bitsandbytes needs CUDA: the tiny SD3 runs unquantized on the logical GPUs.
    args.image.runner = args.image.runner.model_copy(update={"model": "sd3", "default_steps": 2, "quantization": "none"})
    args.llm.runner = args.llm.runner.model_copy(update={"model": "qwen", "max_new_tokens": 16})
    args.tts.runner = args.tts.runner.model_copy(update={"model": "chattts", "max_new_token": 32})
    # lmdeploy has no CPU path: the same folder through the transformers backend stands in here.
    args.vlm.runner = args.vlm.runner.model_copy(
        update={"model": "internvl", "backend": "transformers", "max_new_tokens": 8})
    args.music.runner = args.music.runner.model_copy(update={"model": "stable_audio", "default_steps": 2})
    # The driver cannot see the tiny folders (replicas resolve them via MMSERVE_MODEL_ROOT), and an
    # 80 GB memory plan says nothing about tiny models: tests/test_plan.py covers the plan.
    args.cluster = None
    serve.run(build_app(args), name="prod-shaped", route_prefix="/prod")
    try:
        status = serve.status().applications["prod-shaped"]
        assert status.status == "RUNNING"
        files = {"file": ("speech.wav", SPEECH_ZH.read_bytes(), "audio/wav")}
        resp = httpx.post(ray_cluster + "/prod/v1/pipelines/speech-to-image", files=files,
                          data={"width": "256", "height": "256"}, timeout=180)
        assert resp.status_code == 200, resp.text
        assert decode_b64_png(resp.json()["images"][0]["b64_json"]).size == (256, 256)
    finally:
        serve.delete("prod-shaped")


def test_serve_validates_yaml_args_into_the_builder_args():
    """What `serve run` does with `args:`: Ray reads build_app's annotation and validates into it."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    raw = yaml.safe_load(PROD.read_text())["applications"][0]["args"]
    app = call_user_app_builder_with_args_if_necessary(build_app, raw)
    assert isinstance(app, Application)
