"""serve_config.yaml parses into the builder's args and schedules on logical GPUs as written."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError
from ray import serve

from graphs.app import build_app
from mmserve.config.app import AppArgs, load_app_args
from mmserve.devices import memory_fraction_for
from tests.helpers import SPEECH_ZH, decode_b64_png

ROOT = Path(__file__).parents[1]
PROD = ROOT / "serve_config.yaml"
LOCAL = ROOT / "configs" / "local.yaml"


def test_serve_config_gives_every_gpu_model_a_fraction_and_autoscaling():
    """Planned for one 80 GB GPU (tests/test_plan.py checks the memory): ASR runs on CPU there."""
    args = load_app_args(PROD)
    assert {m.task for m in args.models} == {"asr", "image", "llm", "tts", "vlm", "music"}
    total = 0.0
    for model in args.models:
        deployment = model.deployment
        assert 0 < deployment.num_gpus <= 1 or model.task == "asr", model.name
        assert deployment.autoscaling is not None, model.name
        assert deployment.autoscaling.max_replicas >= deployment.autoscaling.min_replicas
        assert deployment.max_queued_requests > 0, f"{model.name} needs a bounded queue"
        total += deployment.num_gpus * deployment.autoscaling.max_replicas
    assert total <= 1.0, "every model at max_replicas should pack onto the one 80 GB GPU"
    asr = args.default_model("asr")
    assert asr.deployment.num_gpus == 0 and asr.runner.ncpu == asr.deployment.num_cpus
    assert args.default_model("music").deployment.autoscaling.min_replicas == 0, "rarely used music scales to zero"
    assert args.gateway.deployment.autoscaling is not None
    assert args.cluster is not None and args.cluster.gpu_memory_gb == 80


def test_serve_config_uses_the_app_builder_and_real_model_ids():
    config = yaml.safe_load(PROD.read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "graphs.app:build_app"
    args = load_app_args(PROD)
    assert args.model("sd3-medium").runner.model == "stabilityai/stable-diffusion-3-medium-diffusers"
    assert "paraformer" in args.model("paraformer").runner.model
    assert config["http_options"]["request_timeout_s"] >= 60


def test_local_config_is_the_same_app_on_cpu():
    args = load_app_args(LOCAL)
    assert all(model.deployment.num_gpus == 0 for model in args.models)
    assert {m.task for m in args.models} == {m.task for m in load_app_args(PROD).models}


def test_typos_in_config_are_errors_not_silently_ignored():
    raw = yaml.safe_load(PROD.read_text())["applications"][0]["args"]
    raw["models"][1]["deployment"]["num_gpu"] = 0.5
    with pytest.raises(ValidationError, match="num_gpu"):
        AppArgs.model_validate(raw)


def test_serve_options_carry_fraction_and_autoscaling():
    options = load_app_args(PROD).model("sd3-medium").deployment.serve_options()
    assert options["num_replicas"] == "auto"
    assert options["ray_actor_options"]["num_gpus"] == 0.26
    assert options["autoscaling_config"]["max_replicas"] >= 1
    assert options["max_queued_requests"] > 0


def test_custom_resources_pin_replicas_and_bad_ones_name_the_field():
    """`resources:` reaches ray_actor_options (Ray then places replicas only on nodes that have them)."""
    from mmserve.config import DeploymentArgs

    options = DeploymentArgs(num_gpus=0.2, resources={"node_a": 0.01}).serve_options()
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.2, "resources": {"node_a": 0.01}}
    assert "resources" not in DeploymentArgs().serve_options()["ray_actor_options"]
    for bad, field in [({"GPU": 1}, "resources.GPU"), ({"node_a": 0}, "resources.node_a")]:
        with pytest.raises(ValidationError, match=field):
            DeploymentArgs(resources=bad)


@pytest.mark.parametrize("num_gpus,expected", [(0.35, 0.35), (1, 1.0), (2, 1.0), (0.05, 0.05)])
def test_memory_fraction_follows_the_ray_fraction(num_gpus, expected):
    assert memory_fraction_for(num_gpus) == expected


def test_memory_fraction_needs_a_positive_share():
    with pytest.raises(ValueError):
        memory_fraction_for(0)


def test_production_shaped_app_schedules_on_logical_gpus(ray_cluster):
    """serve_config.yaml's fractions, replicas and queues, with the tiny model folders swapped in."""
    args = load_app_args(PROD)
    tiny = {
        "paraformer": {"model": "funasr/paraformer", "vad_model": "funasr/vad", "punc_model": "funasr/punc", "ncpu": 1},
        "paraformer-online": {"model": "funasr-online", "ncpu": 1},
        # bitsandbytes needs CUDA: the tiny SD3 runs unquantized on the logical GPUs.
        "sd3-medium": {"model": "sd3", "default_steps": 2, "quantization": "none"},
        "qwen2.5-7b-instruct": {"model": "qwen", "max_new_tokens": 16},
        "chattts": {"model": "chattts", "max_new_token": 32},
        # lmdeploy has no CPU path: the same folder through the transformers family stands in here.
        "internvl": {"model": "internvl", "family": "transformers-vlm", "max_new_tokens": 8},
        "stable-audio": {"model": "stable_audio", "default_steps": 2},
    }
    for model in args.models:
        model.runner = model.runner.model_copy(update=tiny[model.name])
    # The driver cannot see the tiny folders (replicas resolve them via MMSERVE_MODEL_ROOT), and an
    # 80 GB memory plan says nothing about tiny models: tests/test_plan.py covers the plan.
    args.cluster = None
    serve.run(build_app(args), name="prod-shaped", route_prefix="/prod")
    try:
        status = serve.status().applications["prod-shaped"]
        assert status.status == "RUNNING"
        files = {"file": ("speech.wav", SPEECH_ZH.read_bytes(), "audio/wav")}
        resp = httpx.post(ray_cluster + "/prod/v1/flows/speech-to-image", files=files,
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


def _local_raw() -> dict:
    return yaml.safe_load(LOCAL.read_text())["applications"][0]["args"]


def _entry(raw: dict, name: str) -> dict:
    return next(model for model in raw["models"] if model["name"] == name)


def test_several_models_per_task_and_the_default_is_the_marked_one_else_the_first():
    args = load_app_args(LOCAL)
    assert [m.name for m in args.models if m.task == "vlm"] == ["internvl", "llava"]
    assert args.default_model("vlm").name == "internvl"
    raw = _local_raw()
    del _entry(raw, "internvl")["default"]
    _entry(raw, "llava")["default"] = True
    assert AppArgs.model_validate(raw).default_model("vlm").name == "llava"
    del _entry(raw, "llava")["default"]
    assert AppArgs.model_validate(raw).default_model("vlm").name == "internvl"


def test_a_duplicate_model_name_is_a_config_error_naming_it():
    raw = _local_raw()
    _entry(raw, "llava")["name"] = "internvl"
    with pytest.raises(ValidationError, match="'internvl' is used twice"):
        AppArgs.model_validate(raw)


def test_two_defaults_for_one_task_are_a_config_error_naming_both():
    raw = _local_raw()
    _entry(raw, "llava")["default"] = True
    with pytest.raises(ValidationError, match=r"vlm has two defaults \(internvl, llava\)"):
        AppArgs.model_validate(raw)


def test_a_flow_naming_a_missing_model_is_a_config_error_naming_the_model():
    raw = _local_raw()
    raw["flows"]["speech-to-image"]["asr"] = "whisper-large"
    with pytest.raises(ValidationError, match="flows.speech-to-image.asr: model 'whisper-large' is not in models"):
        AppArgs.model_validate(raw)
    raw["flows"]["speech-to-image"]["asr"] = "llava"
    with pytest.raises(ValidationError, match="'llava' is a vlm model, not asr"):
        AppArgs.model_validate(raw)


def test_a_flow_named_in_config_needs_its_models_and_an_unnamed_one_is_just_off():
    raw = _local_raw()
    raw["models"] = [m for m in raw["models"] if m["runner"]["family"] != "chattts"]
    with pytest.raises(ValidationError, match="flows.voice-chat: needs a tts model"):
        AppArgs.model_validate(raw)
    del raw["flows"]["voice-chat"], raw["flows"]["image-to-speech"]
    assert set(AppArgs.model_validate(raw).served_flows()) == {"speech-to-image"}


def test_batch_on_a_family_that_does_not_batch_is_a_config_error_naming_the_model():
    raw = _local_raw()
    _entry(raw, "paraformer")["batch"] = {"max_batch_size": 4}
    with pytest.raises(ValidationError, match="'paraformer': batch is not allowed for family 'funasr-paraformer'"):
        AppArgs.model_validate(raw)


def test_runner_args_are_validated_as_the_family_they_name():
    raw = _local_raw()
    _entry(raw, "paraformer")["runner"]["family"] = "whisper"
    with pytest.raises(ValidationError, match="whisper"):
        AppArgs.model_validate(raw)
    raw = _local_raw()
    _entry(raw, "llava")["runner"]["max_new_token"] = 8  # a ChatTTS key on a VLM
    with pytest.raises(ValidationError, match="max_new_token"):
        AppArgs.model_validate(raw)
    raw = _local_raw()
    del _entry(raw, "llava")["runner"]["family"]
    with pytest.raises(ValidationError, match="family"):
        AppArgs.model_validate(raw)


def test_flow_stages_default_to_their_task_default():
    flows = load_app_args(LOCAL).served_flows()
    assert flows["voice-chat"].tts == "chattts" and flows["image-to-speech"].vlm == "internvl"
    assert flows["image-to-speech"].asr == "paraformer"


def test_the_local_config_fits_a_two_cpu_machine_with_a_gateway():
    """`scripts/run_local.sh` serves configs/local.yaml on the machine's own CPUs (2 here and in CI):
    the models' starting replicas must leave room for at least one gateway replica, or nothing answers."""
    args = load_app_args(LOCAL)

    def starting(deployment) -> int:
        scaling = deployment.autoscaling
        if scaling is None:
            return deployment.num_replicas
        return scaling.initial_replicas if scaling.initial_replicas is not None else scaling.min_replicas

    models = sum(m.deployment.num_cpus * starting(m.deployment) for m in args.models)
    assert models + args.gateway.deployment.num_cpus <= 2 + 1e-9, models
