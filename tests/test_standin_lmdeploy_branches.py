"""mmserve's lmdeploy branches (LLM and VLM) on CPU, through the lmdeploy 0.18.0 stand-in.

The stand-in (`tests/standins/lmdeploy`) has the real signatures and checks, generates on a thread
of its own and keeps generating when its iterator is dropped, as lmdeploy does: only an abort of
the request's session stops it. `FakeGpu` answers the torch.cuda calls that need a GPU.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time

import pytest
from PIL import Image

import mmserve.runners.lmdeploy_engine as engine_module
from bench.wait import wait_until
from deployments.llm import ChatLLM
from deployments.vlm import VisionLanguage
from mmserve.catalog import ModelArgs
from mmserve.config import DeploymentArgs
from mmserve.errors import InvalidInput
from mmserve.protocol.llm import ChatMessage, GenerationParams
from mmserve.protocol.vlm import VlmRequest
from mmserve.runners.llm import LlmArgs, LlmRunner
from mmserve.runners.vlm import VlmArgs, VlmRunner
from tests.helpers import read_then_leave
from tests.standins.cuda import FakeGpu

HELLO = [ChatMessage(role="user", content="hello")]
NO_WARMUP = DeploymentArgs(warmup=False)


@pytest.fixture
def gpu(monkeypatch) -> FakeGpu:
    return FakeGpu(total_gb=80, used_gb=10).install(monkeypatch)


def llm_args(tiny_models, **kw) -> LlmArgs:
    return LlmArgs(**{"model": str(tiny_models / "qwen"), "family": "lmdeploy-llm", "device": "cuda", **kw})


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    wait_until(condition, timeout, what, 0.01, error=AssertionError)


@pytest.mark.parametrize("engine", ["turbomind", "pytorch"])
def test_weights_reserve_context_and_kv_cache_stay_inside_the_share(tiny_models, gpu, fake_lmdeploy, monkeypatch,
                                                                    engine):
    from mmserve.devices import CUDA_CONTEXT_GB

    monkeypatch.setattr(engine_module, "gpu_share", lambda: 0.27)
    LlmRunner(llm_args(tiny_models, lmdeploy_engine=engine)).close()
    (config,) = fake_lmdeploy.recorder.named("TurbomindEngineConfig" if engine == "turbomind" else "PytorchEngineConfig")
    size = config.kwargs["cache_max_entry_count"]
    weights = engine_module.checkpoint_gb(str(tiny_models / "qwen"))
    if engine == "turbomind":  # a block count: 64 tokens x layers x kv heads x head dim x K,V x 2 bytes
        text = json.loads((tiny_models / "qwen" / "config.json").read_text())
        head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
        block_bytes = 64 * text["num_hidden_layers"] * text["num_key_value_heads"] * head_dim * 2 * 2
        assert isinstance(size, int) and size > 1
        cache_gb = size * block_bytes / 1e9
    else:  # a fraction of what is free after the weights: 10 of the GPU's 80 GB are held by others
        assert 0 < size < 1
        cache_gb = size * (70 - weights)
    used = CUDA_CONTEXT_GB + weights + 3.0 + cache_gb
    assert 0.27 * 80 - 0.01 < used <= 0.27 * 80
    assert fake_lmdeploy.recorder.last("pipeline").args[0] == str(tiny_models / "qwen")


def test_a_share_too_small_for_the_cache_fails_at_start_naming_num_gpus(tiny_models, gpu, fake_lmdeploy, monkeypatch):
    from mmserve.errors import ConfigError

    monkeypatch.setattr(engine_module, "gpu_share", lambda: 0.03)  # 2.4 GB < 3 GB reserve
    with pytest.raises(ConfigError) as err:
        LlmRunner(llm_args(tiny_models))
    assert err.value.field == "num_gpus"
    assert not fake_lmdeploy.recorder.named("pipeline")


def test_chat_and_stream_through_the_engine(tiny_models, gpu, fake_lmdeploy):
    runner = LlmRunner(llm_args(tiny_models, cache_max_entry_count=0.5, max_new_tokens=8))
    result = runner.chat(HELLO, GenerationParams(max_new_tokens=5, seed=3))
    assert result.completion_tokens == 5 and result.finish_reason == "length"
    assert fake_lmdeploy.recorder.last("GenerationConfig").kwargs["random_seed"] == 3
    stream = runner.stream(HELLO, GenerationParams(max_new_tokens=5, seed=3))
    assert "".join(stream) == result.text and stream.result == result
    runner.close()


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_outside_uint64_is_a_400_before_the_engine(tiny_models, gpu, fake_lmdeploy, seed):
    runner = LlmRunner(llm_args(tiny_models, cache_max_entry_count=0.5))
    with pytest.raises(InvalidInput) as err:
        runner.chat(HELLO, GenerationParams(seed=seed))
    assert err.value.field == "seed"
    assert not fake_lmdeploy.recorder.named("GenerationConfig")
    runner.close()


def test_images_past_the_session_length_are_a_400_not_a_500(tiny_models, gpu, fake_lmdeploy):
    fake_lmdeploy.settings.image_tokens = 3000  # InternVL: up to 13 tiles x 256 tokens per large image
    runner = VlmRunner(VlmArgs(model=str(tiny_models / "internvl"), family="lmdeploy-vlm", device="cuda",
                               cache_max_entry_count=0.5, session_len=4096, max_images=4))
    images = [Image.new("RGB", (64, 64), (i * 40, 0, 0)) for i in range(3)]
    with pytest.raises(InvalidInput, match="session length") as err:
        runner.answer(VlmRequest(question="compare them", images=images))
    assert err.value.status_code == 400 and err.value.field == "messages"
    assert runner.answer(VlmRequest(question="and one?", images=images[:1], max_new_tokens=3)).completion_tokens == 3
    runner.close()


def test_an_engine_failure_stays_a_server_error():
    class Failed:
        finish_reason, error_code, error_message, text = "error", "internal_error", "CUDA error", ""

    with pytest.raises(RuntimeError, match="internal_error"):
        engine_module.raise_on_error(Failed())


# --- a client that goes away stops generation --------------------------------------------------


def _assert_aborted_early(fake_lmdeploy, max_new: int, *, off_the_loop: bool = True) -> None:
    engine = fake_lmdeploy.engine
    wait_for(lambda: engine.finished, what="the engine to end the request")
    ((session, how),) = engine.finished.items()
    assert how == "cancel"
    assert engine.tokens(session) < max_new / 4
    aborts = fake_lmdeploy.recorder.named("Session.abort")
    assert aborts
    if off_the_loop:
        assert all(call.thread != threading.main_thread().name for call in aborts), "abort blocked the event loop"


def test_llm_disconnect_aborts_the_lmdeploy_request(tiny_models, gpu, fake_lmdeploy):
    fake_lmdeploy.settings.step_s = 0.005
    replica = ChatLLM.func_or_class(ModelArgs(
        name="m", runner=llm_args(tiny_models, cache_max_entry_count=0.5, max_new_tokens=2000), deployment=NO_WARMUP))
    gc.unfreeze()
    got = asyncio.run(read_then_leave(replica.stream(HELLO, GenerationParams(max_new_tokens=2000)), 3))
    assert len(got) == 3
    _assert_aborted_early(fake_lmdeploy, 2000)
    replica.runner.close()


def test_a_caller_that_leaves_a_whole_reply_aborts_it(tiny_models, gpu, fake_lmdeploy):
    """OpenAI clients ask for whole replies by default; Serve cancels the replica's task when they leave."""
    fake_lmdeploy.settings.step_s = 0.005
    replica = ChatLLM.func_or_class(ModelArgs(
        name="m", runner=llm_args(tiny_models, cache_max_entry_count=0.5, max_new_tokens=2000), deployment=NO_WARMUP))
    gc.unfreeze()

    async def leave_midway():
        task = asyncio.create_task(replica.chat(HELLO, GenerationParams(max_new_tokens=2000)))
        deadline = time.monotonic() + 10
        while fake_lmdeploy.engine.total_tokens() < 3:
            assert time.monotonic() < deadline, "generation never started"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave_midway())
    _assert_aborted_early(fake_lmdeploy, 2000)
    replica.runner.close()


def test_a_cancel_during_preprocessing_still_stops_the_request(tiny_models, gpu, fake_lmdeploy):
    """lmdeploy 0.18 ignores an abort until the request holds an engine handle."""
    fake_lmdeploy.settings.preprocess_s = 0.2
    runner = LlmRunner(llm_args(tiny_models, cache_max_entry_count=0.5, max_new_tokens=2000))
    stream = runner.stream(HELLO, GenerationParams(max_new_tokens=2000))
    stream.cancel()  # before the engine has the request
    list(stream)  # drains what the engine sent before it stopped
    _assert_aborted_early(fake_lmdeploy, 2000, off_the_loop=False)
    runner.close()


def test_vlm_disconnect_aborts_the_lmdeploy_request(tiny_models, gpu, fake_lmdeploy):
    fake_lmdeploy.settings.step_s = 0.005
    replica = VisionLanguage.func_or_class(ModelArgs(
        name="m", runner=VlmArgs(model=str(tiny_models / "internvl"), family="lmdeploy-vlm", device="cuda",
                              cache_max_entry_count=0.5, max_new_tokens=2000), deployment=NO_WARMUP))
    gc.unfreeze()
    request = VlmRequest(question="describe", images=[Image.new("RGB", (32, 32))], max_new_tokens=2000)
    assert len(asyncio.run(read_then_leave(replica.stream(request), 2))) == 2
    _assert_aborted_early(fake_lmdeploy, 2000)
    replica.runner.close()


# --- refusals before anything loads, and lmdeploy's own failures ----------------------------------


@pytest.mark.parametrize("change, field", [({"device": "cpu"}, "device"), ({"dtype": "float32"}, "dtype")])
def test_lmdeploy_refuses_what_it_cannot_run(tiny_models, gpu, fake_lmdeploy, change, field):
    from mmserve.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        LlmRunner(llm_args(tiny_models, **change))
    assert err.value.field == field and not fake_lmdeploy.recorder.named("pipeline")


def test_lmdeploy_not_installed_is_a_config_error(tiny_models, gpu):
    from mmserve.errors import ConfigError

    with pytest.raises(ConfigError, match="lmdeploy==0.18.0") as err:
        LlmRunner(llm_args(tiny_models))
    assert err.value.field == "family"


def test_a_folder_lmdeploy_cannot_load_is_a_config_error(tmp_path, gpu, fake_lmdeploy):
    from mmserve.errors import ConfigError
    from mmserve.runners.lmdeploy_engine import load_pipeline

    with pytest.raises(ConfigError) as err:
        load_pipeline(LlmArgs(model=str(tmp_path), family="lmdeploy-llm", cache_max_entry_count=0.5))
    assert err.value.field == "model"


def test_hub_ids_resolve_through_the_hub_cache_first(tiny_models, monkeypatch):
    import huggingface_hub

    from mmserve.errors import ConfigError

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo: asked.append(repo) or str(tiny_models / "qwen"))
    assert engine_module.local_weights("Qwen/Qwen2.5-7B-Instruct") == str(tiny_models / "qwen")
    assert asked == ["Qwen/Qwen2.5-7B-Instruct"]
    monkeypatch.undo()
    with pytest.raises(ConfigError) as err:  # offline, not cached
        engine_module.local_weights("nobody/not-cached-anywhere")
    assert err.value.field == "model"


def test_memory_others_hold_beyond_their_shares_fails_the_start(tiny_models, fake_lmdeploy, monkeypatch):
    from mmserve.errors import ConfigError

    FakeGpu(total_gb=80, used_gb=75).install(monkeypatch)
    monkeypatch.setattr(engine_module, "gpu_share", lambda: 0.27)
    with pytest.raises(ConfigError, match="beyond their shares"):
        LlmRunner(llm_args(tiny_models))


def test_temperature_above_two_is_a_400(tiny_models, gpu, fake_lmdeploy):
    runner = LlmRunner(llm_args(tiny_models, cache_max_entry_count=0.5))
    with pytest.raises(InvalidInput) as err:
        runner.chat(HELLO, GenerationParams(temperature=2.5))
    assert err.value.field == "temperature"
    runner.close()


def test_a_stop_string_ends_the_request_in_the_engine(tiny_models, gpu, fake_lmdeploy):
    runner = LlmRunner(llm_args(tiny_models, cache_max_entry_count=0.5, max_new_tokens=400))
    whole = runner.chat(HELLO, GenerationParams(max_new_tokens=400, seed=5)).text
    stop = whole[len(whole) // 4 : len(whole) // 4 + 3]
    cut = runner.chat(HELLO, GenerationParams(max_new_tokens=400, seed=5, stop=[stop]))
    assert cut.text == whole[: whole.index(stop)] and cut.finish_reason == "stop"
    wait_for(lambda: len(fake_lmdeploy.engine.finished) == 2, what="both requests to end")
    assert sorted(fake_lmdeploy.engine.finished.values()) == ["cancel", "finish"]
    runner.close()


def test_the_health_check_asks_the_gpu(tiny_models, gpu, fake_lmdeploy):
    replica = ChatLLM.func_or_class(ModelArgs(
        name="m", runner=llm_args(tiny_models, cache_max_entry_count=0.5), deployment=NO_WARMUP))
    gc.unfreeze()
    replica.check_health()
    assert (0,) in gpu.called("mem_get_info")
    replica.runner.close()


class _Pipe:
    """Just enough of a pipeline to replay a fixed list of responses (mmserve's own handling of them)."""

    def __init__(self, responses):
        self.responses = responses

    def session(self):
        return object()

    def stream_infer(self, prompt, sessions=None, gen_config=None):
        return iter(self.responses)


def _response(finish_reason, text=""):
    from types import SimpleNamespace

    return SimpleNamespace(text=text, finish_reason=finish_reason, error_code=None, error_message=None,
                           input_token_len=3, generate_token_len=1)


def test_an_abort_lmdeploy_starts_itself_is_a_retryable_503():
    from mmserve.errors import Overloaded

    request = engine_module.LmdeployRequest(_Pipe([_response(None, "a"), _response("abort")]), "hi", None)
    with pytest.raises(Overloaded) as err:
        list(request.responses())
    assert err.value.status_code == 503


def test_an_engine_that_answers_nothing_is_a_server_error():
    with pytest.raises(RuntimeError, match="no response"):
        list(engine_module.LmdeployRequest(_Pipe([]), "hi", None).responses())
