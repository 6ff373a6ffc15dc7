"""LoRA adapters on the transformers LLM: config checks, the runner, and Serve multiplexing over HTTP."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import openai
import pytest
import torch
import yaml
from pydantic import ValidationError

from mmserve.config.app import AppArgs
from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.llm import ChatMessage, GenerationParams
from tests.helpers import SPEECH_ZH

LOCAL_CONFIG = Path(__file__).parents[1] / "configs" / "local.yaml"
BASE, ADAPTERS = "qwen2.5-7b-instruct", ("qwen-pirate", "qwen-poet")
PROMPT = [{"role": "user", "content": "Tell me about the sea."}]


def local_args() -> dict:
    return copy.deepcopy(yaml.safe_load(LOCAL_CONFIG.read_text())["applications"][0]["args"])


def llm_entry(raw: dict) -> dict:
    return next(m for m in raw["models"] if m["name"] == BASE)


# ---------------------------------------------------------------- config
def test_local_config_serves_the_adapters_on_the_tiny_qwen():
    args = AppArgs.model_validate(local_args())
    assert set(args.model(BASE).adapters) == set(ADAPTERS)
    assert args.adapter_base("qwen-poet").name == BASE and args.adapter_base("nope") is None


@pytest.mark.parametrize("clash", ["chattts", "qwen-poet"])
def test_an_adapter_name_used_by_a_model_or_adapter_is_a_config_error_naming_it(clash):
    raw = local_args()
    llm = llm_entry(raw)
    if clash == "qwen-poet":  # a second LLM whose adapter repeats the first one's
        other = copy.deepcopy(llm)
        other.update(name="second-llm", default=False)
        other["runner"]["adapters"] = {"qwen-poet": "qwen_lora/poet"}
        raw["models"].append(other)
    else:
        llm["runner"]["adapters"][clash] = "qwen_lora/poet"
    with pytest.raises(ValidationError, match=f"adapter name '{clash}' is already used"):
        AppArgs.model_validate(raw)


def test_adapters_on_lmdeploy_are_refused():
    raw = local_args()
    llm_entry(raw)["runner"]["family"] = "lmdeploy-llm"
    refused = r"adapters, max_adapters_per_replica: not taken by family 'lmdeploy-llm'"
    with pytest.raises(ValidationError, match=refused):
        AppArgs.model_validate(raw)


def test_a_flow_stage_may_name_an_adapter_but_not_an_unknown_name():
    raw = local_args()
    raw["flows"]["voice-chat"]["llm"] = "qwen-pirate"
    assert AppArgs.model_validate(raw).served_flows()["voice-chat"].llm == "qwen-pirate"
    raw["flows"]["voice-chat"]["llm"] = "qwen-nope"
    with pytest.raises(ValidationError, match="model 'qwen-nope' is not in models"):
        AppArgs.model_validate(raw)


# ---------------------------------------------------------------- runner (no Ray)
@pytest.fixture(scope="module")
def runner(tiny_models):
    from mmserve.runners.llm import LlmArgs, LlmRunner

    adapters = {name: str(tiny_models / "qwen_lora" / name.removeprefix("qwen-")) for name in ADAPTERS}
    return LlmRunner(LlmArgs(model=str(tiny_models / "qwen"), device="cpu", max_new_tokens=12, adapters=adapters))


GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0, seed=7)
MESSAGES = [ChatMessage(role="user", content="Tell me about the sea.")]


def test_runner_two_adapters_and_the_base_answer_differently_and_repeatably(runner):
    def ids(adapter):
        return runner.chat(MESSAGES, GREEDY, adapter=adapter).text

    base = ids(None)
    for name in ADAPTERS:
        runner.load_adapter(name)
    outputs = {name: ids(name) for name in ADAPTERS}
    assert len({base, *outputs.values()}) == 3
    assert ids(None) == base and {name: ids(name) for name in reversed(ADAPTERS)} == outputs
    streamed = "".join(runner.stream(MESSAGES, GREEDY, adapter="qwen-poet"))
    assert streamed == outputs["qwen-poet"]


def test_runner_loads_the_saved_weights_and_unloads(runner, tiny_models):
    from safetensors.torch import load_file

    for name in ADAPTERS:
        runner.load_adapter(name)
        saved = load_file(tiny_models / "qwen_lora" / name.removeprefix("qwen-") / "adapter_model.safetensors")
        weight = dict(runner.model.named_parameters())[f"model.layers.0.self_attn.q_proj.lora_A.{name}.weight"]
        assert torch.equal(weight, saved["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"])
    loads = dict(runner.adapter_loads)
    runner.load_adapter("qwen-pirate")  # already held: no second load
    assert runner.adapter_loads == loads
    runner.unload_adapter("qwen-pirate")
    assert runner.loaded_adapters == ["qwen-poet"]
    runner.chat(MESSAGES, GREEDY, adapter="qwen-pirate")  # evicted meanwhile: loaded again for the request
    assert runner.adapter_loads["qwen-pirate"] == loads["qwen-pirate"] + 1


def test_runner_refuses_an_unknown_adapter_and_a_missing_folder(runner, tiny_models):
    from mmserve.runners.llm import LlmArgs, LlmRunner

    with pytest.raises(InvalidInput, match="adapter 'nope' is not configured"):
        runner.chat(MESSAGES, GREEDY, adapter="nope")
    with pytest.raises(ConfigError, match="not a peft adapter folder"):
        LlmRunner(LlmArgs(model=str(tiny_models / "qwen"), device="cpu", adapters={"x": str(tiny_models / "qwen")}))


# ---------------------------------------------------------------- Serve multiplexing over HTTP
@pytest.fixture(scope="module")
def client(local_stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_stack + "/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client: openai.OpenAI, model: str, *, stream: bool = False) -> str:
    kw = dict(model=model, messages=PROMPT, max_tokens=12, temperature=0, seed=7)
    if not stream:
        reply = client.chat.completions.create(**kw)
        assert reply.model == model
        return reply.choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert {c.model for c in chunks} == {model}
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def adapter_stats() -> dict:
    from ray import serve

    return serve.get_deployment_handle(BASE, app_name="mmserve").adapter_stats.remote().result(timeout_s=60)


def test_two_adapters_and_the_base_give_three_outputs_streamed_or_not(client):
    outputs = {model: ask(client, model) for model in (BASE, *ADAPTERS)}
    assert len(set(outputs.values())) == 3, outputs
    for model, text in outputs.items():
        assert ask(client, model, stream=True) == text
        assert ask(client, model) == text


def test_an_adapter_is_loaded_once_per_replica(client):
    for _ in range(3):
        for model in ADAPTERS:
            ask(client, model)
            ask(client, model, stream=True)
    stats = adapter_stats()  # the loads happen inside the requests, which have all returned
    assert stats["loads"] == {name: 1 for name in ADAPTERS}, stats
    assert stats["weight_loads"] == {name: 1 for name in ADAPTERS}, stats
    assert sorted(stats["loaded"]) == sorted(ADAPTERS)


def test_models_list_the_adapters_with_their_base(client, local_stack):
    data = {m["id"]: m for m in httpx.get(local_stack + "/v1/models", timeout=30).json()["data"]}
    for name in ADAPTERS:
        assert data[name]["parent"] == data[name]["root"] == BASE
        assert (data[name]["task"], data[name]["family"]) == ("llm", "transformers-llm")
    assert "parent" not in data[BASE]
    assert {m.id for m in client.models.list()} >= {BASE, *ADAPTERS}


def test_an_unknown_adapter_is_404_listing_the_adapters(local_stack):
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"model": "qwen-nope", "messages": PROMPT, "max_tokens": 2})
    assert resp.status_code == 404
    assert "qwen-nope" in resp.json()["error"]["message"] and "qwen-pirate" in resp.json()["error"]["message"]


def test_a_flow_stage_runs_on_an_adapter_picked_by_name(local_stack):
    files = {"file": ("speech.wav", SPEECH_ZH.read_bytes(), "application/octet-stream")}
    ok = httpx.post(local_stack + "/v1/flows/speech-to-image", files=files, timeout=120,
                    data={"llm_model": "qwen-poet", "rewrite": "true", "seed": "1"})
    assert ok.status_code == 200, ok.text
    assert "rewrite_ms" in ok.json()["timings"]
    missing = httpx.post(local_stack + "/v1/flows/speech-to-image", files=files, timeout=120,
                         data={"llm_model": "qwen-nope"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "llm_model"


def test_serve_unloads_the_least_recently_used_adapter_beyond_the_bound(ray_cluster):
    """max_adapters_per_replica: 1 -- a third request for the first adapter loads it again."""
    from ray import serve

    from graphs.app import deploy
    from mmserve.catalog import ModelArgs

    raw = llm_entry(local_args())
    raw["runner"]["max_adapters_per_replica"] = 1
    raw["deployment"] = {"num_cpus": 0.2, "warmup": False}
    handle = serve.run(deploy(ModelArgs.model_validate(raw)), name="lora-lru", route_prefix=None)
    try:
        messages, params = [ChatMessage(role="user", content="hi")], GenerationParams(max_new_tokens=2, temperature=0)
        for adapter in ("qwen-pirate", "qwen-poet", "qwen-pirate"):
            handle.options(multiplexed_model_id=adapter).chat.remote(messages, params).result(timeout_s=120)
        stats = handle.adapter_stats.remote().result(timeout_s=60)
        assert stats["weight_loads"] == {"qwen-pirate": 2, "qwen-poet": 1}, stats
        assert stats["loaded"] == ["qwen-pirate"], stats
    finally:
        serve.delete("lora-lru")
