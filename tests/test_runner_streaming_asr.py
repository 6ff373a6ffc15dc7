"""Streaming Paraformer runner on a tiny random-weight online Paraformer (FunASR's ParaformerStreaming).

Text is noise; the tests check what a live turn relies on: the stream's state is carried between
calls (the text does not depend on how the turn was cut into calls), a call out of order or on a
replica without the stream is refused with StreamLost, and a replay from seq 0 rebuilds it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mmserve.errors import ConfigError, InvalidInput
from mmserve.media import decode_audio
from mmserve.protocol.asr import StreamLost
from mmserve.runners.paraformer_streaming import StreamingAsrArgs, StreamingParaformerRunner, joined
from tests.helpers import BAD_SPEECH_INPUTS, SPEECH_EN, SPEECH_ZH

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STRIDE = 9600  # the default chunk_size [0, 10, 5]: 10 frames of 60 ms


def _runner(tiny_models, **kwargs) -> StreamingParaformerRunner:
    return StreamingParaformerRunner(StreamingAsrArgs(model=str(tiny_models / "funasr-online"), device="cpu",
                                                      ncpu=torch.get_num_threads(), **kwargs))


@pytest.fixture(scope="module")
def runner(tiny_models):
    return _runner(tiny_models)


@pytest.fixture(scope="module", params=[SPEECH_ZH, SPEECH_EN], ids=["zh", "en"])
def speech(request) -> np.ndarray:
    return decode_audio(request.param.read_bytes()).samples


def _streamed(runner, samples: np.ndarray, cut: int, session: str = "s") -> tuple[str, list[str]]:
    """The turn fed in calls of `cut` samples, then an empty final call: (final text, text after each call)."""
    texts = []
    calls = [samples[i: i + cut] for i in range(0, len(samples), cut)]
    for seq, chunk in enumerate(calls):
        texts.append(runner.stream(session, "turn", seq, chunk).text)
    final = runner.stream(session, "turn", len(calls), np.empty(0, np.float32), final=True)
    return final.text, texts


def test_a_turn_reads_the_same_however_it_was_cut_into_calls(runner, speech):
    """The stream carries FunASR's cache between calls: cutting the turn into 250 ms, 600 ms, 1 s or
    1.2 s calls gives the text of the whole input at once, and each call's text extends the last."""
    whole, held = runner.run(speech).text, runner.open_streams
    assert whole
    for cut in (4000, STRIDE, 16000, 2 * STRIDE):
        final, texts = _streamed(runner, speech, cut)
        assert final == whole, cut
        assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:] + [final])), cut
    assert runner.open_streams == held  # a final call ends the stream


def test_the_state_is_what_carries_the_turn(runner, speech):
    """Each call on a fresh stream (no cache carried) reads differently: the equality above is the
    cache's doing, not the model's indifference."""
    calls = [speech[i: i + STRIDE] for i in range(0, len(speech), STRIDE)]
    fresh = joined([runner.stream(f"fresh{i}", "turn", 0, chunk, final=True).text for i, chunk in enumerate(calls)])
    assert fresh != runner.run(speech).text


def test_partials_arrive_before_the_turn_ends(runner, speech):
    _, texts = _streamed(runner, speech, STRIDE)
    assert any(texts[:-1])  # text while audio still comes, not only at the final flush


def test_out_of_order_or_unknown_streams_are_lost_and_a_replay_rebuilds_them(runner, speech):
    with pytest.raises(StreamLost, match="replay") as lost:
        runner.stream("nobody", "turn", 3, speech[:STRIDE])
    assert lost.value.status_code == 409 and lost.value.field == "seq"
    runner.stream("s2", "turn", 0, speech[:STRIDE])
    with pytest.raises(StreamLost):
        runner.stream("s2", "turn", 2, speech[STRIDE: 2 * STRIDE])  # step 1 skipped
    with pytest.raises(StreamLost):
        runner.stream("s2", "other-turn", 1, speech[STRIDE: 2 * STRIDE])
    # the next turn may start before this one's final call: both streams are held
    runner.stream("s2", "next-turn", 0, speech[:STRIDE])
    runner.stream("s2", "turn", 1, speech[STRIDE: 2 * STRIDE])
    # The replay: the turn so far from seq 0, in one call; then on as if nothing happened.
    runner.stream("s2", "turn", 0, speech[: 2 * STRIDE])
    final = runner.stream("s2", "turn", 1, speech[2 * STRIDE:], final=True).text
    assert final == runner.run(speech).text


def test_streams_beyond_max_streams_are_dropped_least_recently_fed_first(tiny_models, speech):
    runner = _runner(tiny_models, max_streams=2)
    for session in ("a", "b", "c"):
        runner.stream(session, "turn", 0, speech[:STRIDE])
    assert runner.open_streams == 2
    with pytest.raises(StreamLost):
        runner.stream("a", "turn", 1, speech[STRIDE: 2 * STRIDE])
    runner.stream("b", "turn", 1, speech[STRIDE: 2 * STRIDE])  # still held


@pytest.mark.parametrize("kwargs, field", BAD_SPEECH_INPUTS)
def test_whole_inputs_are_checked_like_every_recognizer(runner, kwargs, field):
    call = {"samples": np.zeros(8000, np.float32), "sample_rate": 16000, "hotwords": None, **kwargs}
    with pytest.raises(InvalidInput) as err:
        runner.transcribe(**call)
    assert err.value.field == field


def test_no_turn_detection(runner):
    with pytest.raises(InvalidInput) as err:
        runner.detect_speech(None, np.zeros(1600, np.float32), silence_ms=500)
    assert err.value.field == "turn_detection"


@pytest.mark.parametrize("seq", [-1, True, 1.0, "0"])
def test_a_bad_seq_is_a_400(runner, seq):
    with pytest.raises(InvalidInput) as err:
        runner.stream("s", "turn", seq, np.zeros(STRIDE, np.float32))
    assert err.value.field == "seq"


def test_bad_chunks_are_400s_naming_audio(runner):
    for chunk in (np.zeros((2, 100), np.float32), np.full(100, np.nan, np.float32), np.zeros(31 * 16000, np.float32)):
        with pytest.raises(InvalidInput) as err:
            runner.stream("s", "turn", 0, chunk)
        assert err.value.field == "audio"


def test_an_offline_folder_is_refused_naming_model(tiny_models):
    with pytest.raises(ConfigError, match="not an online") as err:
        StreamingParaformerRunner(StreamingAsrArgs(model=str(tiny_models / "funasr" / "paraformer"), device="cpu"))
    assert err.value.field == "model"


def test_args_are_checked():
    with pytest.raises(ValidationError, match="chunk_size"):
        StreamingAsrArgs(model="m", chunk_size=[0, 10])
    assert StreamingAsrArgs(model="m", chunk_size=[0, 8, 4]).chunk_samples == 8 * 960
