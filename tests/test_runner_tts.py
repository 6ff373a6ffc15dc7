"""ChatTTS runner on a tiny random-weight ChatTTS: structure of batched and streamed audio."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.tts import SpeechRequest
from mmserve.runners.chattts import TtsArgs, TtsRunner, split_sentences

MAX_NEW_TOKEN = 32
SAMPLES_PER_CODE = 512  # 2 mel frames of hop 256 per GPT code


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from mmserve.tiny.chattts import build

    return build(tmp_path_factory.mktemp("chattts"))


@pytest.fixture(scope="module")
def runner(model_dir):
    # Tiny matrices are far faster on one thread than with threads fighting over 2 shared cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    args = TtsArgs(model=str(model_dir), device="cpu", max_new_token=MAX_NEW_TOKEN, max_text_chars=200, stream_batch=8)
    yield TtsRunner(args)
    torch.set_num_threads(threads)


def _check_audio(wav: np.ndarray, sentences: int) -> None:
    assert isinstance(wav, np.ndarray) and wav.dtype == np.float32 and wav.ndim == 1
    assert 0 < wav.size <= sentences * MAX_NEW_TOKEN * SAMPLES_PER_CODE
    assert np.isfinite(wav).all()


def test_synthesize_zh_and_en(runner):
    assert runner.sample_rate == 24000
    zh, en = runner.synthesize(
        [SpeechRequest(text="你好，世界。今天天气很好！"), SpeechRequest(text="Hello world. How are you?")]
    )
    _check_audio(zh, 2)
    _check_audio(en, 2)


def test_min_new_token_holds_every_sentence_to_its_length(model_dir):
    """Random weights may end a sentence at any code (on the tiny model, seed 1 ends after 13 of 32);
    min_new_token masks ChatTTS's end-of-audio until then, so each sentence here runs all 32."""
    runner = TtsRunner(TtsArgs(model=str(model_dir), device="cpu", max_new_token=MAX_NEW_TOKEN,
                               min_new_token=MAX_NEW_TOKEN, stream_batch=8))
    for seed in range(4):
        (wav,) = runner.synthesize([SpeechRequest(text="One single sentence", seed=seed)])
        assert wav.size >= (MAX_NEW_TOKEN - 1) * SAMPLES_PER_CODE, (seed, wav.size)
    with pytest.raises(ValidationError, match="min_new_token"):
        TtsArgs(model=str(model_dir), max_new_token=8, min_new_token=9)


def test_voice_and_seed_choices(runner):
    requests = [
        SpeechRequest(text="你好。", voice="male_1", seed=1),
        SpeechRequest(text="Good morning.", speaker_seed=1234, speed=0),
        SpeechRequest(text="Thank you.", speaker_embedding=runner.chat.sample_random_speaker(), speed=9),
        SpeechRequest(text="谢谢你。", skip_refine_text=False, seed=5),
    ]
    out = runner.synthesize(requests)
    assert len(out) == len(requests)
    for wav in out:
        _check_audio(wav, 1)


def test_seed_is_reproducible(runner):
    request = SpeechRequest(text="Hello there.", voice="female_2", seed=42)
    first, second = runner.synthesize([request, request])
    (third,) = runner.synthesize([request])
    assert np.array_equal(first, second) and np.array_equal(first, third)


def test_stream_yields_chunks_before_the_end(runner):
    request = SpeechRequest(text="今天天气很好。We should go out!", seed=7)
    start = time.perf_counter()
    stamps, chunks = [], []
    for chunk in runner.stream(request):
        stamps.append(time.perf_counter() - start)
        chunks.append(chunk)
    total = time.perf_counter() - start
    assert len(chunks) >= 2
    assert stamps[0] < 0.7 * total, "the first chunk must arrive while the rest is still being made"
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.size > 0 and np.isfinite(chunk).all()
    assert sum(c.size for c in chunks) <= 2 * MAX_NEW_TOKEN * SAMPLES_PER_CODE


def test_stream_splits_inside_a_sentence(runner):
    # seed 3 runs to max_new_token on the tiny model: codes 24 and 32 give chunks, plus the tail
    chunks = list(runner.stream(SpeechRequest(text="One single sentence", seed=3)))
    assert len(chunks) >= 2


def test_the_first_chunk_leaves_after_one_stream_batch(runner):
    """stream_skip_batches=0 (the default): ChatTTS would hold back its first 2 batches (3 x the codes)."""
    before = runner.progress.snapshot()["steps"]
    stream = runner.stream(SpeechRequest(text="One single sentence", seed=3))
    next(stream)
    codes = runner.progress.snapshot()["steps"] - before
    stream.close()
    assert codes <= runner.args.stream_batch + 1, codes


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"text": ""}, "input"),
        ({"text": "  \n "}, "input"),
        ({"text": "。。。！"}, "input"),
        ({"text": "长" * 201}, "input"),
        ({"text": "hi", "voice": "nobody"}, "voice"),
        ({"text": "hi", "voice": "male_1", "speaker_seed": 3}, "voice"),
        ({"text": "hi", "speed": 10}, "speed"),
        ({"text": "hi", "seed": -1}, "seed"),
        ({"text": "hi", "speaker_embedding": "not an embedding"}, "speaker_embedding"),
    ],
)
def test_bad_requests(runner, request_kwargs, field):
    request = SpeechRequest(**request_kwargs)
    with pytest.raises(InvalidInput) as err:
        runner.synthesize([SpeechRequest(text="fine."), request])
    assert err.value.field == field
    with pytest.raises(InvalidInput):
        runner.stream(request)  # raises at call time, before any chunk is asked for


def test_split_sentences():
    assert split_sentences("你好，世界。今天好！Hi there. 3.14 is pi;ok?\nNext line", 120) == [
        "你好，世界。", "今天好！", "Hi there.", "3.14 is pi;ok?", "Next line",
    ]
    pieces = split_sentences("a" * 30 + "，" + "b" * 30 + "，" + "c" * 70, 40)
    assert all(len(p) <= 40 for p in pieces) and "".join(pieces) == "a" * 30 + "，" + "b" * 30 + "，" + "c" * 70


def test_bad_configs(model_dir, tmp_path):
    with pytest.raises(ValidationError):
        TtsArgs(model=str(model_dir), voices={"a": 1}, default_voice="b")
    with pytest.raises(ConfigError):
        TtsRunner(TtsArgs(model=str(tmp_path / "missing")))
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    with open(broken / "asset" / "Vocos.safetensors", "ab") as f:
        f.write(b"\0")  # sha256 no longer matches: Chat.load returns False
    with pytest.raises(ConfigError, match="could not load"):
        TtsRunner(TtsArgs(model=str(broken), device="cpu"))
