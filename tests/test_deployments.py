"""Deployment plumbing that needs no cluster: runtime batch knobs, model path resolution."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from deployments.asr import SpeechRecognition
from deployments.common import ModelReplica, with_resolved_paths
from deployments.image import ImageGeneration
from deployments.tts import SpeechSynthesis
from mmserve.catalog import ModelArgs
from mmserve.config import DeploymentArgs
from mmserve.runners.paraformer import AsrArgs
from tests.helpers import read_then_leave


@pytest.mark.parametrize("deployment", [ImageGeneration, SpeechSynthesis])
def test_reconfigure_changes_batching_at_run_time(deployment):
    replica = deployment.func_or_class.__new__(deployment.func_or_class)
    replica.reconfigure({"batch": {"max_batch_size": 7, "batch_wait_timeout_s": 0.2}})
    method = getattr(replica, replica.batched_method)
    assert method._get_max_batch_size() == 7
    assert method._get_batch_wait_timeout_s() == 0.2
    with pytest.raises(ValidationError):
        replica.reconfigure({"max_batch_size": 0})


def test_relative_model_folders_resolve_against_the_model_root(tmp_path, monkeypatch):
    (tmp_path / "funasr" / "vad").mkdir(parents=True)
    monkeypatch.setenv("MMSERVE_MODEL_ROOT", str(tmp_path))
    (tmp_path / "qwen_lora" / "a").mkdir(parents=True)
    asr = ModelArgs(name="asr", runner=AsrArgs(model="iic/some-hub-id", vad_model="funasr/vad"))
    args = with_resolved_paths(asr)
    assert args.model == "iic/some-hub-id"  # not a folder here: passed on as a hub id
    assert args.vad_model == str(tmp_path / "funasr" / "vad")
    llm = ModelArgs.model_validate({"name": "qwen", "runner": {"family": "transformers-llm", "model": "qwen",
                                                              "adapters": {"a": "qwen_lora/a"}}})
    assert with_resolved_paths(llm).adapters == {"a": str(tmp_path / "qwen_lora" / "a")}  # a dict path field


class _RecordingRunner:
    """Plumbing probe: records what the replica base class does with a runner."""

    def __init__(self, args):
        self.args, self.warmups = args, 0

    def warmup(self):
        self.warmups += 1


@pytest.mark.parametrize("warmup", [True, False])
def test_replicas_warm_their_runner_before_taking_traffic(warmup):
    probe = SimpleNamespace(name="probe", runner=_RecordingRunner, path_fields=("model",))
    model = SimpleNamespace(name="m", family=probe, runner=AsrArgs(model="iic/x", device="cpu"),
                            deployment=DeploymentArgs(warmup=warmup))
    runner = ModelReplica().load_runner(model)
    assert runner.warmups == (1 if warmup else 0)
    assert runner.args.device == "cpu"
    assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's way
    gc.unfreeze()


def test_warmup_is_on_by_default_and_not_a_ray_option():
    args = DeploymentArgs()
    assert args.warmup is True
    assert "warmup" not in args.serve_options()
    assert "warmup" not in args.serve_options()["ray_actor_options"]


def test_bad_hotwords_fail_only_their_own_request(tiny_models):
    """Concurrent requests on one ASR replica: the one with 101 hotwords is refused, the other answered."""
    import asyncio

    import numpy as np

    from mmserve.errors import InvalidInput
    from mmserve.protocol.asr import Transcript

    funasr = tiny_models / "funasr"
    args = ModelArgs(
        name="m", runner=AsrArgs(model=str(funasr / "paraformer"), vad_model=str(funasr / "vad"), device="cpu"),
        deployment=DeploymentArgs(warmup=False),
    )
    replica = SpeechRecognition.func_or_class(args)
    gc.unfreeze()
    tone = (0.1 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)

    async def together():
        return await asyncio.gather(replica.transcribe(tone), replica.transcribe(tone, ["w"] * 101),
                                    return_exceptions=True)

    good, bad = asyncio.run(together())
    assert isinstance(good, Transcript), good
    assert isinstance(bad, InvalidInput) and bad.field == "hotwords"


def _drive(stream, items: int):
    import asyncio

    return asyncio.run(read_then_leave(stream, items))


def test_a_client_that_leaves_stops_transformers_generation(tiny_models, monkeypatch):
    """The deployment's stream is driven on a thread; leaving early cancels the runner's generate()."""
    import time

    from deployments.llm import ChatLLM
    from mmserve.protocol.llm import ChatMessage, GenerationParams
    from mmserve.runners import llm
    from mmserve.runners.llm import LlmArgs

    tokens = []
    real_put = llm._TokenQueue.put
    monkeypatch.setattr(llm._TokenQueue, "put", lambda self, value: tokens.append(1) or real_put(self, value))
    replica = ChatLLM.func_or_class(ModelArgs(
        name="m", runner=LlmArgs(model=str(tiny_models / "qwen"), device="cpu", max_new_tokens=1500,
                                              min_new_tokens=1500),
        deployment=DeploymentArgs(warmup=False)))
    gc.unfreeze()
    streams = []
    real_stream = replica.runner.stream
    monkeypatch.setattr(replica.runner, "stream", lambda *a: streams.append(real_stream(*a)) or streams[-1])
    messages = [ChatMessage(role="user", content="tell me a long story")]
    assert len(_drive(replica.stream(messages, GenerationParams(max_new_tokens=1500, temperature=1.0)), 3)) == 3
    deadline = time.monotonic() + 60
    while streams[0]._thread.is_alive():
        assert time.monotonic() < deadline, "generation did not stop"
        time.sleep(0.01)
    assert len(tokens) < 1500 / 2 and streams[0].result is None


def test_a_stream_that_fails_raises_in_the_consumer():
    from deployments.calls import iterate_in_thread

    closed = []

    class Failing:
        def __iter__(self):
            return self

        def __next__(self):
            raise RuntimeError("decoder failed")

        def close(self):
            closed.append(True)

    with pytest.raises(RuntimeError, match="decoder failed"):
        _drive(iterate_in_thread(Failing()), 1)
    assert closed == [True]


def test_a_stream_runs_at_most_ahead_items_in_front_of_its_consumer(monkeypatch):
    """A slow client must not let a producer buffer a whole generation (or audio clip) in memory.

    The producer waits on a semaphore of `ahead` permits: once it has found no room (an acquire that
    timed out), it is parked, and nothing more can come. With no bound it never parks and runs past
    the limit, so the test fails either way it goes wrong, and needs no observation window."""
    import asyncio
    import itertools
    import threading
    import time

    from deployments.calls import iterate_in_thread

    parked = threading.Event()

    class Room(threading.Semaphore):
        def acquire(self, blocking=True, timeout=None):
            got = super().acquire(blocking, timeout)
            if not got:
                parked.set()
            return got

    monkeypatch.setattr(threading, "Semaphore", Room)
    produced = []

    def endless():
        for i in itertools.count():
            produced.append(i)
            yield i

    async def read_one_then_wait():
        stream = iterate_in_thread(endless(), ahead=4)
        assert await stream.__anext__() == 0
        deadline = time.monotonic() + 120
        while not parked.is_set():
            assert len(produced) <= 4 + 2, f"the producer ran {len(produced)} items ahead"
            assert time.monotonic() < deadline, "the producer neither parked nor ran ahead"
            await asyncio.sleep(0.01)
        count = len(produced)
        await stream.aclose()
        return count

    # one read, 4 in flight, and the item the producer holds while it waits for room
    assert asyncio.run(read_one_then_wait()) == 1 + 4 + 1
