"""SenseVoice runner on a tiny random-weight SenseVoice-Small folder (+ the tiny FSMN-VAD).

Text is noise; the tests check structure (types, durations, no rich tags in text), the tag
parser on SenseVoice's real output format, argument and request checks, and that a requested
language reaches the model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from mmserve.errors import ConfigError, InvalidInput
from mmserve.media import decode_audio
from mmserve.protocol.asr import Transcript
from mmserve.runners.sensevoice import (
    FAMILY,
    LANGUAGES,
    SenseVoiceArgs,
    SenseVoiceRunner,
    SpeechTags,
    TaggedSegment,
    parse_rich_text,
)
from mmserve.tiny import funasr as tiny_funasr
from mmserve.tiny import sensevoice as tiny_sensevoice
from tests.helpers import BAD_SPEECH_INPUTS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sensevoice")
    t0 = time.perf_counter()
    tiny_sensevoice.build(root / "sensevoice")
    print(f"\ntiny SenseVoice build: {time.perf_counter() - t0:.2f} s")
    tiny_funasr.build(root / "funasr")  # for its FSMN-VAD (and a Paraformer: a model of the wrong kind)
    return root


def _runner(models, **kwargs) -> SenseVoiceRunner:
    args = SenseVoiceArgs(model=str(models / "sensevoice"), device="cpu",
                          ncpu=torch.get_num_threads(),  # FunASR sets this process-wide: leave it as it is
                          **kwargs)
    return SenseVoiceRunner(args)


@pytest.fixture(scope="module")
def runner(models):
    return _runner(models)


@pytest.fixture(scope="module")
def vad_runner(models):
    return _runner(models, vad_model=str(models / "funasr" / "vad"))


@pytest.fixture(scope="module")
def clips():
    """The repo's speech clips as the gateway hands them over: decoded, resampled to 16 kHz."""
    return {name: decode_audio((DATA / f"speech_{name}.wav").read_bytes()) for name in ("en", "zh")}


class Recorder:
    """Wraps AutoModel.generate: the keyword arguments and raw (tagged) text of every call."""

    def __init__(self, generate):
        self.generate, self.calls, self.raw = generate, [], []

    def __call__(self, **kwargs):
        self.calls.append({k: v for k, v in kwargs.items() if k != "input"})
        results = self.generate(**kwargs)
        self.raw.append(results[0]["text"] if results else None)
        return results


@pytest.fixture
def recorded(runner, monkeypatch):
    recorder = Recorder(runner._model.generate)
    monkeypatch.setattr(runner._model, "generate", recorder)
    return recorder


def _check(out: Transcript, duration_s: float) -> None:
    assert type(out) is Transcript
    assert isinstance(out.text, str)
    assert "<|" not in out.text and "|>" not in out.text
    assert out.text == out.text.strip()
    assert out.duration_s == pytest.approx(duration_s, abs=1e-3)
    assert out.timestamps is None and out.segments is None and out.words is None
    assert out.language is None or out.language in LANGUAGES


# --- the tiny folder ---------------------------------------------------------------------------

def test_folder_is_a_real_sensevoice_model(models):
    import sentencepiece as spm
    from funasr import AutoModel

    folder = models / "sensevoice"
    names = {p.name for p in folder.iterdir()}
    assert names >= {"config.yaml", "configuration.json", "model.pt", "am.mvn", tiny_sensevoice.BPE_MODEL}
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 2**20
    cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    assert (cfg["model"], cfg["encoder"], cfg["tokenizer"], cfg["frontend"]) == (
        "SenseVoiceSmall", "SenseVoiceEncoderSmall", "SentencepiecesTokenizer", "WavFrontend")
    metas = json.loads((folder / "configuration.json").read_text())["file_path_metas"]
    assert metas["tokenizer_conf"]["bpemodel"] == tiny_sensevoice.BPE_MODEL

    model, kwargs = AutoModel.build_model(model=str(folder), device="cpu", ncpu=torch.get_num_threads(),
                                          disable_update=True)
    assert type(model).__name__ == "SenseVoiceSmall" and type(model.encoder).__name__ == "SenseVoiceEncoderSmall"
    assert len(model.encoder.tp_encoders) == cfg["encoder_conf"]["tp_blocks"] > 0  # the real three-stack layout
    state, loaded = torch.load(folder / "model.pt", map_location="cpu"), model.state_dict()
    assert set(state) == set(loaded)  # every saved key matches the rebuilt model (funasr ignores mismatches)
    assert all(torch.equal(state[k], loaded[k]) for k in state)  # and build_model loaded them

    sp = spm.SentencePieceProcessor(model_file=str(folder / tiny_sensevoice.BPE_MODEL))
    assert kwargs["tokenizer"].get_vocab_size() == sp.get_piece_size() == model.ctc.ctc_lo.out_features
    assert sp.id_to_piece(0) == "<unk>"  # SenseVoice's CTC blank is id 0
    for tag in tiny_sensevoice.RICH_TAGS:  # single pieces, decoded as the literal tag
        ids = sp.piece_to_id(tag)
        assert ids != 0 and sp.decode([ids]) == tag


def test_build_is_deterministic(models, tmp_path):
    tiny_sensevoice.build(tmp_path)
    for name in (tiny_sensevoice.BPE_MODEL, "config.yaml", "configuration.json", "am.mvn"):
        assert (tmp_path / name).read_bytes() == (models / "sensevoice" / name).read_bytes(), name
    a = torch.load(tmp_path / "model.pt", map_location="cpu")
    b = torch.load(models / "sensevoice" / "model.pt", map_location="cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- the tag parser, on SenseVoice's own output format ------------------------------------------

@pytest.mark.parametrize("raw, text, language, emotion, events", [
    ("<|en|><|NEUTRAL|><|Speech|><|woitn|>the tribal chieftain called for the boy",
     "the tribal chieftain called for the boy", "en", "neutral", ["speech"]),
    ("<|zh|><|NEUTRAL|><|Speech|><|withitn|>欢迎大家来体验达摩院推出的语音识别模型。",
     "欢迎大家来体验达摩院推出的语音识别模型。", "zh", "neutral", ["speech"]),
    ("<|yue|><|ANGRY|><|Speech|><|withitn|>你而家打个电话俾我。", "你而家打个电话俾我。", "yue", "angry", ["speech"]),
    ("<|ja|><|NEUTRAL|><|Speech|><|withitn|>うちの中学は弁当制で持っていけない場合は、50円の学校販売のパンを買う。",
     "うちの中学は弁当制で持っていけない場合は、50円の学校販売のパンを買う。", "ja", "neutral", ["speech"]),
    ("<|ko|><|HAPPY|><|Speech|><|withitn|>조금만 생각을 하면서 살면 훨씬 편할 거야.",
     "조금만 생각을 하면서 살면 훨씬 편할 거야.", "ko", "happy", ["speech"]),
    ("<|en|><|EMO_UNKNOWN|><|BGM|><|woitn|>", "", "en", None, ["bgm"]),
    ("<|nospeech|><|EMO_UNKNOWN|><|Event_UNK|><|woitn|>", "", "nospeech", None, []),
    ("<|zh|><|SAD|><|Cry|><|withitn|>我好难过。", "我好难过。", "zh", "sad", ["cry"]),
    # VAD segments, joined by FunASR with spaces: one segment each, tags merged
    ("<|zh|><|NEUTRAL|><|Speech|><|withitn|>你好。 <|zh|><|HAPPY|><|Laughter|><|withitn|>哈哈哈。",
     "你好。哈哈哈。", "zh", "happy", ["speech", "laughter"]),
    ("<|en|><|NEUTRAL|><|Speech|><|withitn|>Hi. <|zh|><|NEUTRAL|><|Speech|><|withitn|>欢迎大家来体验。",
     "Hi. 欢迎大家来体验。", "zh", "neutral", ["speech"]),  # most of the text (in characters) is Chinese
    ("<|nospeech|><|EMO_UNKNOWN|><|Event_UNK|><|woitn|> <|en|><|SURPRISED|><|Applause|><|woitn|>wow",
     "wow", "en", "surprised", ["applause"]),
])
def test_parse_rich_text(raw, text, language, emotion, events):
    plain, tags = parse_rich_text(raw)
    assert plain == text
    assert (tags.language, tags.emotion, tags.events) == (language, emotion, events)
    assert "<|" not in plain


def test_parse_rich_text_segments():
    _, tags = parse_rich_text("<|en|><|NEUTRAL|><|Speech|><|woitn|>hi <|ja|><|FEARFUL|><|Cough|><|withitn|>えっ")
    assert tags.segments == [
        TaggedSegment(text="hi", language="en", emotion="neutral", events=["speech"], itn=False),
        TaggedSegment(text="えっ", language="ja", emotion="fearful", events=["cough"], itn=True),
    ]


def test_parse_strips_tags_anywhere():
    # random weights put tags mid-text, and unknown tags are dropped too
    plain, tags = parse_rich_text("noise <|withitn|>a<|FEARFUL|> b <|unknown_tag|>c")
    assert plain == "noise a b c"
    assert tags.emotion == "fearful" and tags.language is None
    assert parse_rich_text("") == ("", SpeechTags(None, None, [], []))


# --- the runner --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["en", "zh"])
def test_speech_clips(runner, clips, name):
    audio = clips[name]
    assert audio.sample_rate == 16000
    t0 = time.perf_counter()
    out = runner.transcribe(audio.samples, audio.sample_rate)
    print(f"\nSenseVoice tiny, {audio.duration_s:.2f} s of {name} speech on CPU: {time.perf_counter() - t0:.3f} s")
    _check(out, audio.duration_s)


def test_tags_come_from_the_raw_output(runner, clips, recorded):
    audio = clips["zh"]
    out, tags = runner.run_tagged(*runner.check(audio.samples, 16000, None))
    raw = recorded.raw[-1]
    assert "<|" in raw  # the tiny model does write tags (random ones): the text is cleaned of them
    assert (out.text, tags) == parse_rich_text(raw)
    _check(out, audio.duration_s)
    assert isinstance(tags, SpeechTags)


def test_with_vad(vad_runner, clips):
    gap = np.zeros(16000, np.float32)
    samples = np.concatenate([clips["en"].samples, gap, clips["zh"].samples])
    out = vad_runner.transcribe(samples)
    _check(out, len(samples) / 16000)
    quiet = vad_runner.transcribe(np.zeros(32000, np.float32))  # no speech: no segment to decode
    _check(quiet, 2.0)
    assert quiet.text == "" and quiet.language is None


def test_requested_language_reaches_the_model(runner, clips, recorded):
    audio = clips["en"]
    runner.transcribe(audio.samples, 16000)  # none requested: the runner's own setting
    runner.transcribe(audio.samples, 16000, language="ja")
    runner.transcribe(audio.samples, 16000, language=" KO ")
    runner.transcribe(audio.samples, 16000, language="")
    assert [c["language"] for c in recorded.calls] == ["auto", "ja", "ko", "auto"]
    assert all(c["use_itn"] is True for c in recorded.calls)
    assert recorded.raw[0] == recorded.raw[3]  # a request's language does not stick to the model
    # and the model decodes differently for it (the language query is the first encoder input)
    runner.transcribe(audio.samples, 16000, language="zh")
    runner.transcribe(audio.samples, 16000, language="en")
    assert recorded.raw[-1] != recorded.raw[-2]


def test_runner_language_and_itn_settings(models, clips, monkeypatch):
    runner = _runner(models, language="yue", use_itn=False)
    recorder = Recorder(runner._model.generate)
    monkeypatch.setattr(runner._model, "generate", recorder)
    out = runner.transcribe(clips["en"].samples)
    assert recorder.calls[0]["language"] == "yue" and recorder.calls[0]["use_itn"] is False
    # the model names a language only when it writes a tag for one; else the one it was told
    detected = parse_rich_text(recorder.raw[0])[1].language
    assert out.language == (detected if detected not in (None, "nospeech") else "yue")


def test_hotwords_are_checked_then_unused(runner, clips, recorded):
    out = runner.transcribe(clips["en"].samples, 16000, hotwords=["hello", "世界"])
    _check(out, clips["en"].duration_s)
    assert "hotword" not in recorded.calls[0]


def test_warmup(runner, vad_runner):
    runner.warmup()
    vad_runner.warmup()


def test_the_shortest_audio_accepted_is_transcribed(runner):
    """0.1 s (MIN_AUDIO_S) is taken; 1599 samples are refused (BAD_SPEECH_INPUTS below)."""
    out = runner.transcribe(np.zeros(1600, dtype=np.float32))
    assert isinstance(out.text, str) and out.duration_s == pytest.approx(0.1)


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("kwargs, field", [
    *BAD_SPEECH_INPUTS,
    ({"language": "fr"}, "language"),
    ({"language": "auto-detect"}, "language"),
    ({"language": 3}, "language"),
])
def test_bad_input(runner, kwargs, field):
    call = {"samples": _tone(0.5), "sample_rate": 16000, "hotwords": None, **kwargs}
    with pytest.raises(InvalidInput) as err:
        runner.transcribe(**call)
    assert err.value.field == field


def test_no_turn_detection(runner):
    assert runner.has_vad is False
    with pytest.raises(InvalidInput) as err:
        runner.detect_speech(None, _tone(0.1), silence_ms=500)
    assert err.value.field == "turn_detection"


# --- args and family ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"language": "fr"}, "language"),
    ({"language": "Chinese"}, "language"),
    ({"use_itn": "sometimes"}, "use_itn"),
    ({"ncpu": 0}, "ncpu"),
    ({"max_single_segment_ms": 10}, "max_single_segment_ms"),
    ({"punc_model": "ct-punc"}, "punc_model"),  # SenseVoice punctuates itself: not a knob here
    ({"hotword": "x"}, "hotword"),
    ({"family": "funasr-paraformer"}, "family"),
])
def test_bad_args_name_their_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        SenseVoiceArgs(**kwargs)
    assert [e["loc"] for e in err.value.errors()] == [(field,)]


def test_args_defaults():
    args = SenseVoiceArgs()
    assert (args.family, args.model, args.language, args.use_itn, args.vad_model) == (
        "funasr-sensevoice", "iic/SenseVoiceSmall", "auto", True, None)
    assert set(LANGUAGES) == {"auto", "zh", "en", "yue", "ja", "ko", "nospeech"}


def test_family():
    assert (FAMILY.name, FAMILY.task, FAMILY.args, FAMILY.runner) == (
        "funasr-sensevoice", "asr", SenseVoiceArgs, SenseVoiceRunner)
    assert FAMILY.batches is False
    FAMILY.check(SenseVoiceArgs(ncpu=1), SimpleNamespace(num_cpus=0.2))
    with pytest.raises(ValueError, match="ncpu"):
        FAMILY.check(SenseVoiceArgs(ncpu=4), SimpleNamespace(num_cpus=2))


def test_missing_folder_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        SenseVoiceRunner(SenseVoiceArgs(model=str(tmp_path / "absent"), device="cpu"))
    assert err.value.field == "model"


def test_other_funasr_model_is_config_error(models):
    with pytest.raises(ConfigError, match="SeacoParaformer") as err:
        SenseVoiceRunner(SenseVoiceArgs(model=str(models / "funasr" / "paraformer"), device="cpu",
                                        ncpu=torch.get_num_threads()))
    assert err.value.field == "model"

