"""The lmdeploy 0.18.0 stand-in itself: real signatures and checks, engine behaviour, errors (no Ray)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from bench.wait import wait_until
from tests.standins.lmdeploy._real_signatures import REAL_SIGNATURES
from tests.standins.lmdeploy_fixture import install

MESSAGES = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def fake_lmdeploy():
    with install() as standin:
        yield standin


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    from mmserve.tiny import qwen

    return qwen.build(tmp_path_factory.mktemp("qwen"))


@pytest.fixture(scope="module")
def internvl_dir(tmp_path_factory) -> Path:
    from mmserve.tiny import internvl

    return internvl.build(tmp_path_factory.mktemp("internvl"))


def _pipe(fake, folder, engine="turbomind", step_s=0.002, **config):
    lm = fake.module
    fake.settings.step_s = step_s
    config_cls = lm.TurbomindEngineConfig if engine == "turbomind" else lm.PytorchEngineConfig
    return lm.pipeline(str(folder), backend_config=config_cls(**config), log_level="WARNING")


def _wait(predicate, timeout=60.0) -> bool:  # generous: a poll returns as soon as the state holds
    return bool(wait_until(predicate, timeout, "the stand-in engine's state", 0.005, error=AssertionError))


# --- signatures ---------------------------------------------------------------------------------


def _norm(expr: str | None) -> str | None:
    return None if expr is None else ast.unparse(ast.parse(expr, mode="eval"))


def _real_params(text: str) -> list[tuple]:
    fn = ast.parse(f"def f{text}: pass").body[0]
    a, out = fn.args, []
    defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
    for arg, d in zip(a.args, defaults):
        out.append((arg.arg, "POSITIONAL_OR_KEYWORD", arg.annotation and ast.unparse(arg.annotation), d))
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", None, None))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", arg.annotation and ast.unparse(arg.annotation), d))
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD", None, None))
    return out


def _resolve(module, dotted: str):
    obj = module
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _mismatches(obj, text: str) -> list[str]:
    """Differences between the stand-in ``obj`` and the real parameter/field list ``text``."""
    real = _real_params(text)
    namespace = dict(vars(sys.modules[obj.__module__]))
    problems = []
    if dataclasses.is_dataclass(obj):
        mine = dataclasses.fields(obj)
        if [f.name for f in mine] != [r[0] for r in real]:
            return [f"fields {[f.name for f in mine]} != real {[r[0] for r in real]}"]
        for f, (name, _, annotation, default) in zip(mine, real):
            if _norm(f.type if isinstance(f.type, str) else None) != _norm(annotation):
                problems.append(f"{name}: annotation {f.type!r} != real {annotation!r}")
            if default is None:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    problems.append(f"{name}: has a default, the real field has none")
            elif isinstance(default, ast.Call) and ast.unparse(default.func) == "field":
                factory = eval(ast.unparse(default.keywords[0].value), namespace)
                if f.default_factory is not factory:
                    problems.append(f"{name}: default_factory {f.default_factory} != real {factory}")
            elif f.default != eval(ast.unparse(default), namespace) or type(f.default) is not type(
                eval(ast.unparse(default), namespace)
            ):
                problems.append(f"{name}: default {f.default!r} != real {ast.unparse(default)}")
        return problems
    params = list(inspect.signature(obj).parameters.values())
    if [(p.name, p.kind.name) for p in params] != [(r[0], r[1]) for r in real]:
        return [f"parameters {[(p.name, p.kind.name) for p in params]} != real {[(r[0], r[1]) for r in real]}"]
    for p, (name, _, annotation, default) in zip(params, real):
        mine = None if p.annotation is inspect.Parameter.empty else p.annotation
        if _norm(mine) != _norm(annotation):
            problems.append(f"{name}: annotation {mine!r} != real {annotation!r}")
        if default is None:
            if p.default is not inspect.Parameter.empty:
                problems.append(f"{name}: has a default, the real parameter has none")
        elif p.default != eval(ast.unparse(default), namespace):
            problems.append(f"{name}: default {p.default!r} != real {ast.unparse(default)}")
    return problems


@pytest.mark.parametrize("name", sorted(REAL_SIGNATURES))
def test_signature_is_the_real_one(fake_lmdeploy, name):
    assert _mismatches(_resolve(fake_lmdeploy.module, name), REAL_SIGNATURES[name]) == []


def test_module_names_and_version(fake_lmdeploy):
    import lmdeploy

    assert lmdeploy is fake_lmdeploy.module
    assert lmdeploy.__version__ == "0.18.0"
    assert lmdeploy.GenerationConfig.__module__ == "lmdeploy.messages"
    from lmdeploy import GenerationConfig, PytorchEngineConfig, TurbomindEngineConfig, pipeline  # noqa: F401


def test_install_restores_sys_modules():
    sentinel = object()
    sys.modules["lmdeploy"] = sentinel
    try:
        with install() as fake:
            assert sys.modules["lmdeploy"] is fake.module
        assert sys.modules["lmdeploy"] is sentinel
        assert not [n for n in sys.modules if n.startswith("lmdeploy.")]
    finally:
        del sys.modules["lmdeploy"]


# --- config checks (0.18.0 __post_init__) -------------------------------------------------------


def test_turbomind_config_checks_are_pydantic_validation_errors(fake_lmdeploy):
    from pydantic import ValidationError

    tm = fake_lmdeploy.module.TurbomindEngineConfig
    for bad in (dict(dtype="float32"), dict(tp=0), dict(cache_max_entry_count=0), dict(cache_max_entry_count=-0.1),
                dict(quant_policy=16), dict(tp=1.5), dict(session_len="long")):
        with pytest.raises(ValidationError):
            tm(**bad)
    # TurboMind only asserts > 0: a value >= 1 is a number of KV blocks, not refused
    assert tm(cache_max_entry_count=1.5).cache_max_entry_count == 1.5
    cfg = tm(dtype="bfloat16", tp=2, session_len=None, cache_max_entry_count=0.5)
    assert (cfg.dtype, cfg.tp, cfg.session_len, cfg.max_batch_size) == ("bfloat16", 2, None, None)
    assert fake_lmdeploy.recorder.last("TurbomindEngineConfig").kwargs == dict(
        dtype="bfloat16", tp=2, session_len=None, cache_max_entry_count=0.5
    )


def test_pytorch_config_checks_are_assertions(fake_lmdeploy):
    pt = fake_lmdeploy.module.PytorchEngineConfig
    for bad in (dict(dtype="float32"), dict(tp=0), dict(cache_max_entry_count=0), dict(cache_max_entry_count=1.0),
                dict(block_size=48)):
        with pytest.raises(AssertionError):
            pt(**bad)
    with pytest.raises(ValueError, match="invalid quant_policy"):
        pt(quant_policy=3)
    assert pt(cache_max_entry_count=0.999).kernel_block_size == 64


def test_generation_config_defaults_and_checks(fake_lmdeploy):
    gc = fake_lmdeploy.module.GenerationConfig
    d = gc()
    assert (d.max_new_tokens, d.do_sample, d.temperature, d.top_p, d.top_k, d.random_seed) == (512, False, 0.8, 1.0, 50,
                                                                                              None)
    for bad in (dict(temperature=2.01), dict(temperature=-0.1), dict(top_p=1.01), dict(top_p=-0.1), dict(top_k=-1),
                dict(n=0), dict(min_p=1.5)):
        with pytest.raises(AssertionError):
            gc(**bad)
    with pytest.raises(ValueError, match="logprob_start_len"):
        gc(logprob_start_len=-2)
    assert gc(temperature=2.0, random_seed=-5).random_seed == -5  # the seed is not checked here


# --- pipeline, session_len, recording -----------------------------------------------------------


def test_pipeline_records_arguments_and_derives_session_len(fake_lmdeploy, qwen_dir, internvl_dir):
    pipe = _pipe(fake_lmdeploy, qwen_dir, session_len=None, cache_max_entry_count=0.5)
    call = fake_lmdeploy.recorder.last("pipeline")
    assert call.args == (str(qwen_dir),) and call.kwargs["log_level"] == "WARNING"
    assert call.kwargs["backend_config"] is pipe.backend_config
    assert pipe.async_engine.session_len == 8192  # config.json max_position_embeddings
    assert pipe.backend_config.session_len == 8192  # written back into the config, as in 0.18
    assert not hasattr(pipe, "session_len")
    vl = _pipe(fake_lmdeploy, internvl_dir, engine="pytorch")
    assert vl.async_engine.session_len == 4096  # text_config.max_position_embeddings
    assert _pipe(fake_lmdeploy, qwen_dir, session_len=64).async_engine.session_len == 64
    with pytest.raises(OSError):
        fake_lmdeploy.module.pipeline(str(qwen_dir / "missing"))


def test_stream_yields_deltas_then_a_final_response(fake_lmdeploy, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, step_s=0.01)
    session = pipe.session()
    config = lm.GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, random_seed=7)
    started = time.monotonic()
    outs = list(pipe.stream_infer(MESSAGES, sessions=session, gen_config=config))
    assert time.monotonic() - started >= 0.05  # one token per 10 ms step
    assert [o.generate_token_len for o in outs] == [1, 2, 3, 4, 5, 6, 6]
    assert [o.finish_reason for o in outs] == [None] * 6 + ["length"]
    assert outs[-1].text == "" and all(o.text for o in outs[:-1])
    assert len({o.input_token_len for o in outs}) == 1 and outs[0].input_token_len > 5
    call = fake_lmdeploy.recorder.last("Pipeline.stream_infer")
    assert call.args == (MESSAGES,) and call.kwargs == dict(sessions=session, gen_config=config)

    whole = pipe.infer(MESSAGES, gen_config=config)
    assert whole.text == "".join(o.text for o in outs)  # same seed and prompt, same text
    assert (whole.generate_token_len, whole.finish_reason) == (6, "length")
    other = pipe.infer(MESSAGES, gen_config=lm.GenerationConfig(max_new_tokens=6, do_sample=True, random_seed=8))
    assert other.text != whole.text
    fake_lmdeploy.settings.stop_after = 3
    stopped = _pipe(fake_lmdeploy, qwen_dir).infer(MESSAGES, gen_config=config)
    assert (stopped.generate_token_len, stopped.finish_reason) == (3, "stop")


def test_generation_runs_on_its_own_threads(fake_lmdeploy, qwen_dir):
    pipe = _pipe(fake_lmdeploy, qwen_dir)
    names = {t.name for t in threading.enumerate()}
    assert {"lmdeploy-standin-loop", "lmdeploy-standin-engine"} <= names
    pipe.close()
    assert fake_lmdeploy.recorder.names()[-1] == "Pipeline.close"


# --- cancellation -------------------------------------------------------------------------------


def test_dropping_the_iterator_does_not_stop_generation(fake_lmdeploy, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, step_s=0.002)
    session = pipe.session()
    outputs = pipe.stream_infer(MESSAGES, sessions=session, gen_config=lm.GenerationConfig(max_new_tokens=60))
    next(outputs)
    del outputs
    engine = fake_lmdeploy.engine
    seen = engine.tokens(session.session_id)
    assert _wait(lambda: engine.tokens(session.session_id) > seen)
    assert engine.wait_idle(60)
    assert engine.tokens(session.session_id) == 60 and engine.finished[session.session_id] == "finish"


@pytest.mark.parametrize("engine_name", ["turbomind", "pytorch"])
def test_abort_stops_generation(fake_lmdeploy, qwen_dir, engine_name):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, engine=engine_name, step_s=0.005)
    session = pipe.session()
    outputs = pipe.stream_infer(MESSAGES, sessions=session, gen_config=lm.GenerationConfig(max_new_tokens=10_000))
    first = next(outputs)
    assert first.finish_reason is None
    engine = fake_lmdeploy.engine
    session.abort()
    if engine_name == "pytorch":  # abort returned after the engine acknowledged the stop
        assert session.session_id not in engine.active_sessions()
    assert _wait(lambda: session.session_id not in engine.active_sessions())
    stopped_at, steps = engine.tokens(session.session_id), engine.steps
    pipe.infer(MESSAGES, gen_config=lm.GenerationConfig(max_new_tokens=10, ignore_eos=True))  # ten more engine steps
    assert engine.steps >= steps + 10
    assert engine.tokens(session.session_id) == stopped_at < 10_000
    rest = list(outputs)
    assert rest[-1].finish_reason == "abort" and rest[-1].text == ""
    assert fake_lmdeploy.recorder.last("Session.abort").args == ()
    session.abort()  # after the end: a no-op, as in 0.18


def test_abort_during_preprocess_is_a_no_op(fake_lmdeploy, qwen_dir):
    """0.18's ``Session.async_abort`` only cancels a request that holds an engine handle."""
    lm = fake_lmdeploy.module
    fake_lmdeploy.settings.preprocess_s = 3.0  # simulated work, long enough for abort() to land in it on a busy machine
    pipe = _pipe(fake_lmdeploy, qwen_dir, step_s=0.001)
    session = pipe.session()
    outputs = pipe.stream_infer(MESSAGES, sessions=session, gen_config=lm.GenerationConfig(max_new_tokens=20))
    session.abort()  # still preprocessing: nothing to cancel yet
    assert [o.finish_reason for o in outputs][-1] == "length"
    assert fake_lmdeploy.engine.tokens(session.session_id) == 20


# --- errors as 0.18 reports them ----------------------------------------------------------------


def test_prompt_as_long_as_the_session_is_an_error_response(fake_lmdeploy, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, session_len=16)
    outs = list(pipe.stream_infer(MESSAGES * 4, sessions=pipe.session(), gen_config=lm.GenerationConfig()))
    assert len(outs) == 1
    out = outs[0]
    assert (out.finish_reason, out.error_code, out.text, out.input_token_len) == ("error", "context_length_exceeded",
                                                                                  "", 0)
    assert out.error_message.startswith("Input length (") and "context length (16)" in out.error_message


def test_session_len_caps_the_answer(fake_lmdeploy, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, session_len=24)
    out = pipe.infer(MESSAGES, gen_config=lm.GenerationConfig(max_new_tokens=100))
    assert out.finish_reason == "length" and out.input_token_len + out.generate_token_len == 24


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_turbomind_fails_a_seed_outside_uint64(fake_lmdeploy, qwen_dir, seed):
    lm = fake_lmdeploy.module
    out = _pipe(fake_lmdeploy, qwen_dir).infer(MESSAGES, gen_config=lm.GenerationConfig(random_seed=seed))
    assert (out.finish_reason, out.error_code, out.error_message) == ("error", "internal_error",
                                                                      "An internal server error occurred.")
    assert out.input_token_len > 0  # preprocess passed; the engine refused the config


def test_pytorch_keeps_the_low_32_bits_of_the_seed(fake_lmdeploy, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, qwen_dir, engine="pytorch")

    def text(seed):
        return pipe.infer(MESSAGES, gen_config=lm.GenerationConfig(max_new_tokens=5, do_sample=True,
                                                                   random_seed=seed)).text

    assert text(-1) == text(2**32 - 1) == text(2**64 + 2**32 - 1)


def test_vlm_prompt_with_images(fake_lmdeploy, internvl_dir, qwen_dir):
    lm = fake_lmdeploy.module
    pipe = _pipe(fake_lmdeploy, internvl_dir)
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    out = pipe.infer(("What is this?", [image]), gen_config=lm.GenerationConfig(max_new_tokens=4))
    assert (out.finish_reason, out.generate_token_len) == ("length", 4)
    text_only = pipe.infer("What is this?", gen_config=lm.GenerationConfig(max_new_tokens=4))
    assert out.input_token_len == text_only.input_token_len + 4 + 2  # image_seq_length 4 + <img></img>
    deltas = list(pipe.stream_infer(("What is this?", [image]), gen_config=lm.GenerationConfig(max_new_tokens=3)))
    assert [d.finish_reason for d in deltas] == [None, None, None, "length"]

    bad = Image.new("RGB", (64, 0))
    err = pipe.infer(("What is this?", [bad]), gen_config=lm.GenerationConfig())
    assert (err.finish_reason, err.error_code, err.error_message) == ("error", "preprocess_failed",
                                                                      "Request preprocessing failed.")
    with pytest.raises(ValueError, match="Unsupported prompts"):
        pipe.infer(("What is this?", [b"not an image"]))
    text_model = _pipe(fake_lmdeploy, qwen_dir)
    err = text_model.infer(("What is this?", [image]))
    assert (err.error_code, err.error_message) == ("invalid_request", "Multimodal input is not supported by this model.")
