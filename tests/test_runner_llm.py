"""Chat LLM runner on a tiny random-weight Qwen3: counts, streaming, sampling, limits."""

from __future__ import annotations

import time

import pytest
import torch
from pydantic import ValidationError

from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.runners.llm import LlmArgs, LlmRunner
from mmserve.runners.lmdeploy_engine import kv_cache_gb, kv_cache_ratio
from mmserve.tiny import qwen

HELLO = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "你好! What is the weather?")]
GREEDY = GenerationParams(max_new_tokens=24, temperature=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return qwen.build(tmp_path_factory.mktemp("qwen"))


@pytest.fixture(scope="module")
def runner(model_dir):
    return LlmRunner(LlmArgs(model=str(model_dir), device="cpu", max_new_tokens=32, max_input_tokens=64))


def test_folder_loads_with_auto_classes(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.vocab_size >= len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("max_new", [1, 5, 24])
def test_chat_counts(runner, max_new):
    result = runner.chat(HELLO, GenerationParams(max_new_tokens=max_new, seed=0))
    assert isinstance(result, ChatResult) and isinstance(result.text, str)
    assert result.prompt_tokens > 10
    assert 1 <= result.completion_tokens <= max_new
    assert result.finish_reason in ("stop", "length")
    assert (result.finish_reason == "length") <= (result.completion_tokens == max_new)


def test_min_new_tokens_holds_back_the_end_of_a_reply(model_dir):
    """A model that ends every reply at once (its head makes end-of-sequence win at each step) runs to
    the configured minimum, and a request asking for fewer tokens than that gets what it asked for."""

    def runner_that_ends_at_once(min_new: int) -> LlmRunner:
        runner = LlmRunner(LlmArgs(model=str(model_dir), device="cpu", max_new_tokens=32, min_new_tokens=min_new))
        old = runner.model.lm_head
        head = runner.model.lm_head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        head.bias.data[min(runner._eos_ids)] = 10.0
        return runner

    greedy = GenerationParams(max_new_tokens=20, temperature=0)
    assert runner_that_ends_at_once(0).chat(HELLO, greedy).completion_tokens == 1
    held = runner_that_ends_at_once(6)
    result = held.chat(HELLO, greedy)
    assert (result.completion_tokens, result.finish_reason) == (7, "stop")  # six tokens, then the end
    assert "".join(held.stream(HELLO, greedy)) == result.text
    capped = held.chat(HELLO, GenerationParams(max_new_tokens=3, temperature=0))
    assert (capped.completion_tokens, capped.finish_reason) == (3, "length")


def test_request_cannot_exceed_the_configured_cap(runner):
    assert runner.chat(HELLO, GenerationParams(max_new_tokens=10_000, temperature=0)).completion_tokens <= 32


def test_stream_joins_to_greedy_chat(runner):
    whole = runner.chat(HELLO, GREEDY)
    stream = runner.stream(HELLO, GREEDY)
    deltas = list(stream)
    assert len(deltas) > 1 and all(deltas)
    assert "".join(deltas) == whole.text
    assert stream.result == whole


def test_stream_delivers_before_generation_ends(model_dir):
    runner = LlmRunner(LlmArgs(model=str(model_dir), device="cpu", max_new_tokens=200))
    start = time.perf_counter()
    stream = runner.stream([ChatMessage("user", "xxxxxxxxxx")], GenerationParams(temperature=0))
    next(stream)
    first = time.perf_counter() - start
    for _ in stream:
        pass
    total = time.perf_counter() - start
    assert stream.result.completion_tokens > 100  # precondition: long enough to time
    assert first < total / 4


def test_stream_close_stops_generation(runner):
    stream = runner.stream(HELLO, GREEDY)
    next(stream)
    stream.close()
    assert list(stream) == [] and stream.result is None
    assert runner.chat(HELLO, GREEDY).completion_tokens > 0  # the lock was released


def test_concurrent_streams_take_turns(runner):
    expected = runner.chat(HELLO, GREEDY).text
    streams = [runner.stream(HELLO, GREEDY) for _ in range(3)]
    assert ["".join(s) for s in reversed(streams)] == [expected] * 3


def test_stop_strings_cut_chat_and_stream_alike(runner):
    text = runner.chat(HELLO, GREEDY).text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    params = GenerationParams(max_new_tokens=24, temperature=0, stop=[stop])
    result = runner.chat(HELLO, params)
    stream = runner.stream(HELLO, params)
    assert "".join(stream) == result.text == text[: text.find(stop)]
    assert result.finish_reason == "stop" and stream.result == result


def test_seeded_sampling_is_reproducible(runner):
    params = GenerationParams(max_new_tokens=24, temperature=1.0, top_p=1.0, seed=1234)
    first, second = runner.chat(HELLO, params), runner.chat(HELLO, params)
    assert first == second
    assert "".join(runner.stream(HELLO, params)) == first.text
    others = {runner.chat(HELLO, GenerationParams(max_new_tokens=24, temperature=1.0, seed=s)).text for s in range(4)}
    assert len(others) > 1


def test_seed_does_not_leak_into_global_rng(runner):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    runner.chat(HELLO, GenerationParams(max_new_tokens=4, seed=99))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("messages", "params", "field"),
    [
        ([], GREEDY, "messages"),
        ([ChatMessage("user", "你好 hello " * 40)], GREEDY, "messages"),
        ([ChatMessage("robot", "hi")], GREEDY, "messages"),
        (HELLO, GenerationParams(max_new_tokens=0), "max_new_tokens"),
        (HELLO, GenerationParams(temperature=-1), "temperature"),
        (HELLO, GenerationParams(top_p=0), "top_p"),
        (HELLO, GenerationParams(stop=[""]), "stop"),
    ],
)
def test_invalid_input(runner, messages, params, field):
    with pytest.raises(InvalidInput) as err:
        runner.chat(messages, params)
    assert err.value.field == field
    with pytest.raises(InvalidInput):
        runner.stream(messages, params)  # raised at the call, before any delta


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantization_needs_cuda(quantization):
    # A folder that does not exist: the error must come before anything is loaded.
    with pytest.raises(ConfigError, match="CUDA"):
        LlmRunner(LlmArgs(model="/nonexistent/qwen", device="cpu", quantization=quantization))


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        LlmRunner(LlmArgs(model=str(tmp_path / "missing"), device="cpu"))
    with pytest.raises(ConfigError, match="lmdeploy"):
        LlmRunner(LlmArgs(model=str(tmp_path), family="lmdeploy-llm"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_4bit_on_cuda(model_dir):
    pytest.importorskip("bitsandbytes")
    runner = LlmRunner(LlmArgs(model=str(model_dir), device="cuda", quantization="4bit", max_new_tokens=8))
    assert runner.model.is_loaded_in_4bit
    result = runner.chat(HELLO, GenerationParams(temperature=0))
    assert 1 <= result.completion_tokens <= 8
    assert "".join(runner.stream(HELLO, GenerationParams(temperature=0))) == result.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusals")
def test_lmdeploy_without_cuda_is_a_config_error(model_dir):
    with pytest.raises(ConfigError) as err:
        LlmRunner(LlmArgs(model=str(model_dir), family="lmdeploy-llm"))
    assert err.value.field == "family" and "CUDA" in err.value.message


@pytest.mark.parametrize("family, key, value", [
    ("lmdeploy-llm", "quantization", "4bit"),  # bitsandbytes is a transformers option; lmdeploy serves AWQ
    ("lmdeploy-llm", "adapters", {"a": "/x"}),
    ("transformers-llm", "tp", 2),
    ("transformers-llm", "cache_max_entry_count", 0.3),
])
def test_a_key_the_family_does_not_take_is_a_config_error(family, key, value):
    with pytest.raises(ValidationError, match=f"{key}: not taken by family"):
        LlmArgs(model="m", family=family, **{key: value})


def test_lmdeploy_args():
    args = LlmArgs(model="m", family="lmdeploy-llm", lmdeploy_engine="pytorch", session_len=4096, tp=2)
    assert (args.cache_max_entry_count, args.tp, args.session_len) == ("auto", 2, 4096)
    assert LlmArgs(model="m", family="lmdeploy-llm", cache_max_entry_count=0.3).cache_max_entry_count == 0.3
    assert LlmArgs(model="m").lmdeploy_engine == "turbomind"
    for bad in ({"cache_max_entry_count": 1.0}, {"cache_max_entry_count": 0}, {"tp": 0}, {"session_len": 0},
                {"lmdeploy_engine": "vllm"}, {"cache_max_entry_count": "full"}):
        with pytest.raises(ValidationError):
            LlmArgs(model="m", family="lmdeploy-llm", **bad)


def test_kv_cache_gets_what_the_share_leaves():
    # Qwen2.5-7B bf16 (15.2 GB) on 0.27 of an 80 GB GPU: 21.6 - 0.5 context - 15.2 - 3 reserve.
    assert kv_cache_gb(0.27 * 80, 15.2, 3.0) == pytest.approx(2.9)
    with pytest.raises(ConfigError) as err:
        kv_cache_gb(0.2 * 80, 15.2, 3.0)  # 16 GB cannot hold the weights and a reserve
    assert err.value.field == "num_gpus"


def test_kv_cache_ratio_is_of_the_memory_free_after_the_weights():
    assert kv_cache_ratio(2.9, 15.2, 80) == pytest.approx(2.9 / 64.8)
    assert kv_cache_ratio(60, 10, 80) == 0.8  # never above lmdeploy's own default
    with pytest.raises(ConfigError, match="beyond their shares"):
        kv_cache_ratio(2.9, 15.2, 17.0)  # others already hold 63 of the 80 GB


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="lmdeploy needs a CUDA GPU")
def test_lmdeploy_chat_and_stream_on_cuda(model_dir):
    pytest.importorskip("lmdeploy")
    # The PyTorch engine: TurboMind has attention kernels for head dims 64/128/192/256/576, and
    # the tiny Qwen's is 16.
    runner = LlmRunner(
        LlmArgs(
            model=str(model_dir), family="lmdeploy-llm", lmdeploy_engine="pytorch", session_len=2048,
            cache_max_entry_count=0.05, max_new_tokens=32, max_input_tokens=64,
        )
    )
    try:
        assert runner.model is None and runner.pipe is not None
        for max_new in (1, 24):
            result = runner.chat(HELLO, GenerationParams(max_new_tokens=max_new, seed=0))
            assert isinstance(result, ChatResult) and isinstance(result.text, str)
            assert result.prompt_tokens > 10 and 0 <= result.completion_tokens <= max_new
            assert result.finish_reason in ("stop", "length")
            assert (result.finish_reason == "length") <= (result.completion_tokens == max_new)

        whole = runner.chat(HELLO, GREEDY)
        stream = runner.stream(HELLO, GREEDY)
        deltas = list(stream)
        assert all(isinstance(d, str) and d for d in deltas)
        assert "".join(deltas) == whole.text and stream.result == whole

        if len(whole.text) > 4:
            stop = whole.text[len(whole.text) // 2 : len(whole.text) // 2 + 2]
            stopped = runner.chat(HELLO, GenerationParams(max_new_tokens=24, temperature=0, stop=[stop]))
            assert stopped.text == whole.text[: whole.text.find(stop)] and stopped.finish_reason == "stop"

        stream = runner.stream([ChatMessage("user", "xxxxxxxxxx")], GenerationParams(temperature=1.0, seed=1))
        next(stream, None)
        stream.close()  # aborts the request; the engine keeps serving
        with pytest.raises(InvalidInput):
            runner.chat([ChatMessage("user", "你好 hello " * 40)], GREEDY)
        with pytest.raises(InvalidInput):
            runner.stream(HELLO, GenerationParams(temperature=3.0))
        assert runner.chat(HELLO, GenerationParams(max_new_tokens=4)).completion_tokens <= 4
    finally:
        runner.close()
