"""Streaming turn detection with FunASR's online FSMN-VAD (AsrRunner.detect_speech), on the tiny VAD.

The tiny VAD's weights are random, so it is made a level gate through FSMN-VAD's own decibel
threshold (mmserve/tiny/funasr.py); everything after that, the framing, the turn state machine, the
end-of-turn silence and the state carried between calls, is FunASR's. The test stream is
tests/data/speech_en.wav framed by 1.5 s of quiet noise (about -60 dBFS) on each side, fed in chunks
as the realtime gateway feeds it.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
import torch

from mmserve.errors import InvalidInput
from mmserve.media import decode_audio
from mmserve.protocol.asr import VadStep
from mmserve.runners.paraformer import AsrArgs, AsrRunner
from mmserve.tiny import funasr as tiny_funasr
from mmserve.tiny import whisper as tiny_whisper

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 16000
PAD_S = 1.5
CHUNK = RATE // 10  # 100 ms
DATA = os.path.join(os.path.dirname(__file__), "data", "speech_en.wav")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_funasr.build(tmp_path_factory.mktemp("funasr"))


def _runner(models, **kw) -> AsrRunner:
    return AsrRunner(AsrArgs(model=str(models / "paraformer"), device="cpu", ncpu=torch.get_num_threads(), **kw))


@pytest.fixture(scope="module")
def runner(models):
    return _runner(models, vad_model=str(models / "vad"))


@pytest.fixture(scope="module")
def stream():
    """(samples, speech_start_ms, speech_end_ms): speech bounds from the recording's own level."""
    with open(DATA, "rb") as f:
        speech = decode_audio(f.read()).samples  # resampled to 16 kHz mono
    frames = np.lib.stride_tricks.sliding_window_view(speech, 400)[::160]  # 25 ms frames, 10 ms apart
    loud = np.nonzero(10 * np.log10((frames**2).sum(axis=1) + 1e-6) > -40)[0]
    rng = np.random.default_rng(1)
    pad = [rng.normal(0, 0.001, int(PAD_S * RATE)).astype(np.float32) for _ in range(2)]
    start_ms = int(PAD_S * 1000 + loud[0] * 10)
    end_ms = int(PAD_S * 1000 + loud[-1] * 10 + 25)
    return np.concatenate([pad[0], speech, pad[1]]), start_ms, end_ms


def _feed(step, samples, sizes=(CHUNK,), final=True):
    """Feed samples in chunks of the given sizes (cycled); [(event, ms, ms of audio sent when it came)]."""
    state, events, sent, k = None, [], 0, 0
    while sent < len(samples):
        chunk = samples[sent:sent + sizes[k % len(sizes)]]
        sent, k = sent + len(chunk), k + 1
        out = step(state, chunk, final=final and sent >= len(samples))
        assert isinstance(out, VadStep) and isinstance(out.state, bytes)
        state = out.state
        events += [(kind, ms, sent * 1000 // RATE) for kind, ms in out.events]
    return events


def _detect(runner, silence_ms=500):
    return lambda state, chunk, final: runner.detect_speech(state, chunk, silence_ms=silence_ms, final=final)


def test_one_turn_is_found_where_the_speech_is(runner, stream):
    samples, start_ms, end_ms = stream
    events = _feed(_detect(runner, 500), samples)
    assert [e[0] for e in events] == ["start", "stop"], events
    (_, start, _), (_, stop, stop_seen_at) = events
    assert abs(start - start_ms) <= 300
    assert end_ms < stop <= end_ms + 500 + 300
    assert stop_seen_at <= end_ms + 500 + 300  # the stop is known within silence_ms (+ a chunk) of the end


def test_a_shorter_silence_ends_the_turn_sooner(runner, stream):
    samples, _, end_ms = stream
    short = _feed(_detect(runner, 200), samples)
    long = _feed(_detect(runner, 1200), samples)
    assert [e[0] for e in short] == [e[0] for e in long] == ["start", "stop"]
    assert short[1][2] + 700 <= long[1][2]  # seen at least 700 ms earlier
    assert short[1][2] <= end_ms + 200 + 300 < long[1][2]


def test_silence_alone_starts_no_turn(runner):
    quiet = np.random.default_rng(2).normal(0, 0.001, 3 * RATE).astype(np.float32)
    assert _feed(_detect(runner), quiet) == []
    assert _feed(_detect(runner), np.zeros(3 * RATE, np.float32)) == []


def test_chunks_of_any_length_give_the_same_turn(runner, stream):
    samples = stream[0]
    by_100ms = [e[:2] for e in _feed(_detect(runner), samples)]
    assert [e[:2] for e in _feed(_detect(runner), samples, sizes=(7, 3000, 16, 555, 1601, 15, 320))] == by_100ms
    assert [e[:2] for e in _feed(_detect(runner), samples, sizes=(len(samples),))] == by_100ms


def test_events_match_funasr_streaming_with_its_cache_kept_in_memory(runner, models, stream):
    """The bytes round trip (and what it leaves out of the state) changes nothing FunASR decides."""
    with contextlib.redirect_stdout(io.StringIO()):
        from funasr import AutoModel
    vad = AutoModel(model=str(models / "vad"), disable_update=True, disable_pbar=True, device="cpu",
                    ncpu=torch.get_num_threads(), log_level="WARNING")
    samples, cache, expected = stream[0], {}, []
    for i in range(0, len(samples), CHUNK):
        out = vad.generate(input=samples[i:i + CHUNK], cache=cache, is_final=False, chunk_size=100,
                           max_end_silence_time=500)
        for begin, end in out[0]["value"]:
            expected += [("start", begin)] if begin != -1 else []
            expected += [("stop", end)] if end != -1 else []
    assert [e[:2] for e in _feed(_detect(runner), samples, final=False)] == expected


def test_the_state_lets_another_replica_continue_the_stream(runner, models, stream):
    other = _runner(models, vad_model=str(models / "vad"))  # a second replica: nothing shared but bytes
    samples = stream[0]
    alone = _feed(_detect(runner), samples)
    turn = iter([runner, other] * len(samples))
    alternating = _feed(lambda s, c, final: next(turn).detect_speech(s, c, silence_ms=500, final=final), samples)
    assert alternating == alone


def test_streams_keep_their_own_silence_setting(runner, stream):
    """Two sessions with different silence_ms, interleaved on one runner (whose VAD options are
    shared), each end their turn as they would alone."""
    samples = stream[0]
    states, found = {200: None, 1200: None}, {200: [], 1200: []}
    for i in range(0, len(samples), CHUNK):
        for silence_ms, state in states.items():
            out = runner.detect_speech(state, samples[i:i + CHUNK], silence_ms=silence_ms)
            states[silence_ms] = out.state
            found[silence_ms] += [(kind, ms, (i + CHUNK) * 1000 // RATE) for kind, ms in out.events]
    for silence_ms, events in found.items():
        assert events == _feed(_detect(runner, silence_ms), samples, final=False)
    assert found[200][-1][2] + 700 <= found[1200][-1][2]  # the 200 ms stream's stop came first


def test_final_closes_an_open_turn(runner, stream):
    samples, start_ms, end_ms = stream
    cut = (start_ms + end_ms) // 2 * RATE // 1000  # stop in mid-speech
    events = _feed(_detect(runner), samples[:cut])
    assert [e[0] for e in events] == ["start", "stop"]
    assert events[1][1] <= cut * 1000 // RATE


def test_the_state_stays_small(runner, stream):
    samples = stream[0]
    state, sizes = None, []
    for i in range(0, len(samples), CHUNK):
        state = runner.detect_speech(state, samples[i:i + CHUNK], silence_ms=500).state
        sizes.append(len(state))
    assert max(sizes) < 64_000, max(sizes)
    # one long chunk: the kept tails of it must not drag the whole chunk's storage along
    assert len(runner.detect_speech(None, samples, silence_ms=500).state) < 64_000


@pytest.mark.parametrize(
    "call, field",
    [
        ({"samples": np.zeros(0, np.float32)}, "audio"),
        ({"samples": np.zeros((2, CHUNK), np.float32)}, "audio"),
        ({"samples": np.zeros(CHUNK, np.int16)}, "audio"),
        ({"samples": [0.0] * CHUNK}, "audio"),
        ({"samples": np.full(CHUNK, np.nan, np.float32)}, "audio"),
        ({"samples": np.zeros(11 * RATE, np.float32)}, "audio"),
        ({"silence_ms": 50}, "silence_ms"),
        ({"silence_ms": 6000}, "silence_ms"),
        ({"silence_ms": 500.0}, "silence_ms"),
        ({"silence_ms": True}, "silence_ms"),
        ({"state": "not bytes"}, "state"),
        ({"state": b"not a state"}, "state"),
    ],
)
def test_bad_input_names_the_field(runner, call, field):
    args = {"state": None, "samples": np.zeros(CHUNK, np.float32), "silence_ms": 500, **call}
    with pytest.raises(InvalidInput) as err:
        runner.detect_speech(args["state"], args["samples"], silence_ms=args["silence_ms"])
    assert err.value.field == field


def test_models_without_a_streaming_vad_say_so(models, tmp_path):
    from mmserve.runners.faster_whisper import WhisperArgs, WhisperRunner

    plain = _runner(models)  # Paraformer without vad_model
    whisper = WhisperRunner(WhisperArgs(model=str(tiny_whisper.build(tmp_path / "whisper")), device="cpu"))
    for runner in (plain, whisper):
        assert runner.has_vad is False
        with pytest.raises(InvalidInput) as err:
            runner.detect_speech(None, np.zeros(CHUNK, np.float32), silence_ms=500)
        assert err.value.field == "turn_detection" and "streaming VAD" in err.value.message


def test_the_deployment_streams_in_a_thread_after_warming_the_vad(models, stream):
    """SpeechRecognition.detect_speech (no Ray: the class itself), warmed up as a replica is."""
    import asyncio
    import gc

    from deployments.asr import SpeechRecognition
    from mmserve.catalog import ModelArgs
    from mmserve.config import DeploymentArgs

    args = ModelArgs(name="m", runner=AsrArgs(model=str(models / "paraformer"), vad_model=str(models / "vad"),
                                              device="cpu", ncpu=torch.get_num_threads()),
                     deployment=DeploymentArgs(warmup=True, num_cpus=torch.get_num_threads()))
    replica = SpeechRecognition.func_or_class(args)
    gc.unfreeze()  # load_runner freezes start-up objects
    samples = stream[0]

    async def feed():
        state, events = None, []
        for i in range(0, len(samples), CHUNK):
            step = await replica.detect_speech(state, samples[i:i + CHUNK], 500)
            state, events = step.state, events + step.events
        return events

    assert [kind for kind, _ in asyncio.run(feed())] == ["start", "stop"]
