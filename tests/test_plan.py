"""The GPU capacity planner: real parameter counts, published figures, fit and scheduling checks.

No Ray, no GPU, no hub: the shipped configs in mmserve/model_configs are counted on the meta device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from graphs.app import build_app
from mmserve import model_configs
from mmserve.config.app import AppArgs, load_app_args
from mmserve.plan import ClusterArgs, PlanError, check_app_args
from mmserve.plan.__main__ import main
from mmserve.plan.check import plan_app
from mmserve.runners.registry import FAMILIES
from mmserve.sizing.estimates import GB, decoder_peak_bytes, weight_bytes
from mmserve.sizing.params import build_component_sizes, component_sizes, config_digest

ROOT = Path(__file__).parents[1]
PROD = ROOT / "serve_config.yaml"
LOCAL = ROOT / "configs" / "local.yaml"
ONE_GPU = ClusterArgs(gpu_memory_gb=80, gpus_per_node=1, nodes=1)


def parts(key: str):
    return component_sizes(str(model_configs.path(key)), model_configs.VOCAB_SIZES.get(key))


def test_qwen25_7b_bf16_weights_match_the_published_15_2_gb():
    # Qwen2.5-7B: 7.61B parameters (model card) -> 15.2 GB in bf16.
    assert weight_bytes(parts("qwen2.5-7b-instruct"), "bfloat16") / GB == pytest.approx(15.2, rel=0.10)
    assert sum(p.params for p in parts("qwen2.5-7b-instruct")) == pytest.approx(7.61e9, rel=0.01)


def test_sd3_medium_fp16_with_t5_matches_the_published_peak():
    """diffusers' SD3 blog (huggingface/blog sd3.md, "Summary of Memory Optimizations"): fp16 with all
    three text encoders peaks at 18.765 GB (GiB: torch max_memory_allocated / 1024**3) for one
    1024x1024 image on an A100 = 20.15 decimal GB. Weights + one image's activations must match."""
    sd3 = parts("sd3-medium")
    by_name = {p.name: p.params for p in sd3}
    assert by_name["transformer"] == pytest.approx(2.0e9, rel=0.05)  # "2B parameters"
    assert by_name["text_encoder_3"] == pytest.approx(4.7e9, rel=0.05)  # "4.7B parameter T5-XXL"
    weights = weight_bytes(sd3, "float16")
    one_image = decoder_peak_bytes(256, 128, 1024 * 1024, 2) + 2 * (4096 + 333) * 1536 * 12 * 2
    assert (weights + one_image) / GB == pytest.approx(18.765 * 1024**3 / GB, rel=0.10)


def test_internvl25_4b_matches_the_published_3_7b_parameters():
    assert sum(p.params for p in parts("internvl2.5-4b")) == pytest.approx(3.7e9, rel=0.10)


def test_paraformer_large_matches_the_published_220m_parameters():
    """Paraformer-large is published as 220M; SeACo adds its bias encoder, SeACo decoder and
    hotword output layer (22M) on top, so the recognizer body is what 220M describes."""
    import torch
    from funasr.register import tables

    config = yaml.safe_load((model_configs.path("paraformer-large") / "config.yaml").read_text())
    with torch.device("meta"):
        model = tables.model_classes.get(config["model"])(
            **{**config["model_conf"], **config, "vocab_size": 8404, "input_size": 560, "frontend": None})
    body = sum(p.numel() for name in ("encoder", "decoder", "predictor") for p in getattr(model, name).parameters())
    assert body == pytest.approx(220e6, rel=0.10)
    assert sum(p.params for p in parts("paraformer-large")) == sum(p.numel() for p in model.parameters())


def test_stable_audio_open_matches_its_paper():
    # Stable Audio Open (Evans et al. 2024): DiT 1057M, autoencoder 156M, T5-base 109M.
    by_name = {p.name: p.params for p in parts("stable-audio-open-1.0")}
    assert by_name["transformer"] == pytest.approx(1057e6, rel=0.02)
    assert by_name["vae"] == pytest.approx(156e6, rel=0.02)
    assert by_name["text_encoder"] == pytest.approx(109e6, rel=0.02)


def test_shipped_counts_are_current():
    """param_counts.json (what `serve run` reads) equals a fresh meta-device build of every config."""
    import json

    stored = json.loads(model_configs.COUNTS_FILE.read_text())
    for key in model_configs.keys():
        folder = model_configs.path(key)
        assert stored[key]["digest"] == config_digest(folder), f"run python -m mmserve.sizing.params ({key})"
        fresh = build_component_sizes(folder, model_configs.VOCAB_SIZES.get(key))
        assert [(p.name, p.params) for p in fresh] == [(c["name"], c["params"]) for c in stored[key]["components"]], key


def test_each_shipped_config_is_one_a_family_names():
    """A config folder no family ships would never size anything; a family naming a missing one fails."""
    shipped = {key for family in FAMILIES.values() for key in family.shipped.values()}
    assert shipped == set(model_configs.keys())


def test_hub_ids_map_to_loadable_configs():
    from diffusers import SD3Transformer2DModel

    assert model_configs.key_for("stabilityai/stable-diffusion-3-medium-diffusers",
                                 FAMILIES["diffusers-sd3"].shipped) == "sd3-medium"
    assert model_configs.key_for("/models/ChatTTS", FAMILIES["chattts"].shipped) == "chattts"
    assert model_configs.key_for("/models/ChatTTS", FAMILIES["diffusers-sd3"].shipped) is None
    config = SD3Transformer2DModel.load_config(model_configs.path("sd3-medium") / "transformer")
    assert config["num_layers"] == 24


def test_serve_config_fits_one_gpu_with_5gb_headroom_per_model():
    args = load_app_args(PROD)
    plan = plan_app(args, args.cluster)
    assert plan.ok, plan.errors
    assert not plan.warnings, plan.warnings
    assert args.cluster == ONE_GPU
    for model in plan.models:
        assert model.headroom_gb >= 5, (model.name, model.headroom_gb)


def _multi_gpu_variant() -> AppArgs:
    text = PROD.read_text()
    block = text.split("# BEGIN MULTI-GPU VARIANT\n")[1].split("# END MULTI-GPU VARIANT")[0]
    overrides = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))
    raw = yaml.safe_load(text)["applications"][0]["args"]

    def merge(base: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            elif key == "models":  # an entry updates the entry of the same name
                by_name = {model["name"]: model for model in base[key]}
                for model in value:
                    merge(by_name[model["name"]], model)
            else:
                base[key] = value

    merge(raw, overrides)
    return AppArgs.model_validate(raw)


def test_the_commented_multi_gpu_variant_plans_and_scales():
    args = _multi_gpu_variant()
    assert args.cluster.gpus_per_node == 8
    plan = plan_app(args, args.cluster)
    assert plan.ok, plan.errors
    assert not [w for w in plan.warnings if "not sized" not in w], plan.warnings
    assert all(m.headroom_gb >= 5 for m in plan.models)
    assert sum(m.max_replicas for m in plan.models) > len(plan.models)


def _prod_with(**deployments) -> AppArgs:
    """serve_config.yaml with some models' deployment options changed, by task."""
    args = load_app_args(PROD)
    for task, update in deployments.items():
        model = args.default_model(task)
        model.deployment = model.deployment.model_copy(update=update)
    return args


def test_sd3_given_a_tenth_of_80gb_is_rejected_with_the_numbers():
    args = _prod_with(image={"num_gpus": 0.1})
    with pytest.raises(PlanError) as raised:
        check_app_args(args, ONE_GPU, warn=lambda _: None)
    message = str(raised.value)
    assert "sd3-medium (image" in message and "does not fit its share" in message
    assert "0.1 x 80 GB = 8.0 GB" in message and "weights 11.7" in message


def test_fractions_over_one_on_a_node_are_rejected_with_the_sum():
    args = _prod_with(llm={"num_gpus": 0.45})
    plan = plan_app(args, ONE_GPU)
    (error,) = plan.errors
    assert "minimum replica set does not fit" in error and "qwen2.5-7b-instruct 1x0.45" in error and "1.02 GPU" in error


def test_a_scale_to_zero_model_that_cannot_come_back_is_a_warning():
    args = _prod_with(tts={"num_gpus": 0.15})  # image .26 + llm .27 + vlm .21 + tts .15 + music .13 = 1.02
    plan = plan_app(args, ONE_GPU)
    assert plan.ok, plan.errors
    assert any(w.startswith("stable-audio scales to zero and may not come back") for w in plan.warnings), plan.warnings


def test_max_replicas_that_can_never_be_scheduled_are_warnings():
    from mmserve.config import AutoscalingArgs

    args = _prod_with(llm={"autoscaling": AutoscalingArgs(min_replicas=1, max_replicas=3)})
    plan = plan_app(args, ONE_GPU)
    assert plan.ok
    assert any("qwen2.5-7b-instruct cannot scale to max_replicas 3: at most 1" in w for w in plan.warnings)


def test_a_model_that_cannot_be_sized_is_a_warning_not_a_refusal(tmp_path):
    args = load_app_args(PROD)
    music = args.default_model("music")
    music.runner = music.runner.model_copy(update={"model": "acme/unknown"})
    plan = plan_app(args, ONE_GPU)
    assert plan.ok
    assert any("stable-audio (music" in w and "cannot be sized" in w for w in plan.warnings)


def test_local_cpu_config_has_nothing_to_place(capsys):
    assert main([str(LOCAL)]) == 0
    assert "nothing to place on GPUs" in capsys.readouterr().out


def test_cli_exit_codes_and_flag_overrides(capsys):
    assert main([str(PROD)]) == 0
    assert "plan: OK" in capsys.readouterr().out
    assert main([str(PROD), "--gpu-memory-gb", "40"]) == 1  # the same fractions of a 40 GB GPU
    assert "does not fit its share" in capsys.readouterr().out


def test_build_app_refuses_a_config_that_does_not_fit():
    args = _prod_with(image={"num_gpus": 0.1})
    with pytest.raises(PlanError, match="sd3-medium"):
        build_app(args)
