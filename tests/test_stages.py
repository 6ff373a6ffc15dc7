"""Which failures are the server's trouble (503, retried) and which saturated models refuse early."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, NodeDiedError, RayTaskError
from ray.serve.exceptions import BackPressureError

from gateway import admission
from gateway.services import ServedModel
from graphs.stages import Saturation, Stages, replica_lost, stage_error
from mmserve.errors import InvalidInput


def test_a_dead_replica_or_node_is_a_retryable_503_naming_the_stage():
    wrapped = RayTaskError("transcribe", "traceback", ActorDiedError())
    for exc in (ActorDiedError(), ActorUnavailableError("gone", None), NodeDiedError("node"), wrapped):
        assert replica_lost(exc), exc
        error = stage_error("asr", exc)
        assert (error.status_code, error.code, error.stage) == (503, "replica_unavailable", "asr")
        assert error.retry_after_s >= 1


def test_bugs_and_bad_input_are_not_mistaken_for_a_dead_replica():
    assert not replica_lost(ValueError("bug"))
    assert stage_error("llm", ValueError("bug")).status_code == 500
    assert stage_error("llm", InvalidInput("bad", field="messages")).status_code == 400
    assert stage_error("image", BackPressureError(num_queued_requests=2, max_queued_requests=2)).code == "overloaded"


def test_a_stage_past_its_deadline_is_a_504_naming_it():
    stages = Stages({"image": 0.05})
    with pytest.raises(Exception) as caught:
        asyncio.run(stages.run("image", asyncio.sleep(30)))  # a stand-in for a stuck call
    error = caught.value
    assert (error.status_code, error.code, error.stage) == (504, "stage_timeout", "image")
    assert asyncio.run(Stages().run("image", asyncio.sleep(0.1, "done"))) == "done"  # no deadline: none


def test_a_route_is_refused_only_while_every_model_it_can_reach_is_full():
    models = {name: ServedModel(name, task, "family", None) for name, task in
              [("qwen", "llm"), ("internvl", "vlm"), ("sd3", "image")]}
    saturation = Saturation(hold_s=60)
    saturation.refused("qwen")
    assert admission.refusal("/v1/chat/completions", models, saturation) is None  # the VLM may still take it
    saturation.refused("internvl")
    refused = admission.refusal("/v1/chat/completions", models, saturation)
    assert refused is not None and refused.status_code == 503
    assert admission.refusal("/v1/images/generations", models, saturation) is None
    assert admission.refusal("/healthz", models, saturation) is None
    saturation.finished("internvl")  # a call finished: a slot is free again
    assert admission.refusal("/v1/chat/completions", models, saturation) is None
    saturation.refused("internvl")  # flows are refused by their first stage, under either prefix
    assert admission.refusal("/v1/flows/describe-aloud", models, saturation) is not None
    assert admission.refusal("/v1/pipelines/describe-aloud", models, saturation) is not None
    assert admission.refusal("/v1/flows/voice-chat", models, saturation) is None  # its first stage is asr
    lapsing = Saturation(hold_s=0.0)  # the mark also lapses after hold_s
    lapsing.refused("sd3")
    assert admission.refusal("/v1/images/generations", models, lapsing) is None
