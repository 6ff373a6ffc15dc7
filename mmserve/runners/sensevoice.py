"""Speech recognition with SenseVoice-Small through FunASR: text, language, emotion, audio events.

SenseVoice is a non-autoregressive CTC model: one encoder pass gives the text of a whole input,
preceded by four "rich" tags, e.g. `<|en|><|NEUTRAL|><|Speech|><|woitn|>the tribal chieftain`:
the language, the speaker's emotion, the audio event and whether inverse text normalization
(punctuation, digits) was applied. With a VAD, FunASR decodes each speech segment on its own and
joins the tagged texts with spaces. The runner strips every tag from the text, reports the
language in `Transcript.language`, and parses the rest into `SpeechTags` (`run_tagged`), which
the protocol has no field for yet.

`model` is a SenseVoiceSmall folder laid out like the hub repo `iic/SenseVoiceSmall`
(`config.yaml`, `model.pt`, `chn_jpn_yue_eng_ko_spectok.bpe.model`, `am.mvn`), e.g. the tiny
one `mmserve.tiny.sensevoice` writes, or a ModelScope id (downloaded on first load). Input is the
ASR task's: decoded mono float32 at 16 kHz, so the ASR deployment serves this runner as it
serves Paraformer (`check` then `run`).

SenseVoice takes no hotwords: they are checked like every recognizer's, then not used (the
OpenAI route sends `prompt` as hotwords; a hint the model cannot use is not an error). It is not
a streaming model and this runner offers no turn detection (as faster-whisper's).

Torch-free at import: torch, funasr and mmserve.devices are imported when a runner is built.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.asr import Transcript, VadStep
from mmserve.runners.family import Family
from mmserve.runners.paraformer import (
    FUNASR_SHIPPED,
    check_threads_fit_the_cpus,
    estimate,
    funasr_model_name,
    load_funasr,
    no_streaming_vad,
)
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords

log = logging.getLogger(__name__)

_MIN_SAMPLES = 400  # one 25 ms fbank frame: FunASR fails on less, and there is no speech in it

Language = Literal["auto", "zh", "en", "yue", "ja", "ko", "nospeech"]
LANGUAGES: tuple[str, ...] = get_args(Language)  # SenseVoiceSmall.lid_dict's keys


class SenseVoiceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["funasr-sensevoice"] = "funasr-sensevoice"
    model: str = Field("iic/SenseVoiceSmall", description="SenseVoiceSmall folder (laid out like the hub repo) "
                       "or ModelScope id")
    vad_model: str | None = Field(None, description="FSMN-VAD folder or id; None feeds whole inputs to the model")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    ncpu: int = Field(1, ge=1, description="torch CPU threads; FunASR sets this process-wide, so size it per replica")
    language: Language = Field("auto", description="language the model is told to decode ('auto' detects it); "
                               "a request's own language takes precedence")
    use_itn: bool = Field(True, description="inverse text normalization: punctuation, digits, casing")
    batch_size_s: int = Field(60, ge=1, description="seconds of VAD segments decoded per batch on GPU")
    max_single_segment_ms: int | None = Field(
        30000, ge=1000, description="longest VAD segment in ms (FunASR's SenseVoice setting: 30 s); "
        "None keeps the VAD model's own")
    merge_vad: bool = Field(True, description="join short VAD segments before decoding (FunASR's SenseVoice demo)")
    merge_length_s: int = Field(15, ge=1, description="longest joined segment when merge_vad is on, in seconds")
    max_hotwords: int = Field(100, ge=0, description="most hotwords accepted per request (checked, not used)")


# --- rich tags ---------------------------------------------------------------------------------

_EMOTIONS = {"HAPPY": "happy", "SAD": "sad", "ANGRY": "angry", "NEUTRAL": "neutral", "FEARFUL": "fearful",
             "DISGUSTED": "disgusted", "SURPRISED": "surprised", "EMO_UNKNOWN": None}
_EVENTS = {"Speech": "speech", "BGM": "bgm", "Applause": "applause", "Laughter": "laughter", "Cry": "cry",
           "Sneeze": "sneeze", "Breath": "breath", "Cough": "cough", "Sing": "sing",
           "Speech_Noise": "speech_noise", "Event_UNK": None, "GBG": None}
_ITN = {"withitn": True, "woitn": False}
_TAG = re.compile(r"<\|([^|<>]*)\|>")
_TAG_RUN = re.compile(r"(?:<\|[^|<>]*\|>)+")  # adjacent tags: one segment's (a space parts segments)


@dataclass
class TaggedSegment:
    """One stretch of SenseVoice output: the text after one run of tags (one VAD segment)."""

    text: str
    language: str | None = None  # one of LANGUAGES but "auto"; "nospeech" when the model heard none
    emotion: str | None = None  # happy, sad, angry, neutral, fearful, disgusted, surprised; None: unknown
    events: list[str] = field(default_factory=list)  # speech, bgm, applause, laughter, cry, sneeze, ...
    itn: bool | None = None  # whether the text was inverse-normalized


@dataclass
class SpeechTags:
    """What SenseVoice said about the audio besides the text (no `Transcript` field holds it yet)."""

    language: str | None  # of the most text ("nospeech" when no segment had speech); None: no tag
    emotion: str | None  # the most frequent non-neutral emotion, else "neutral"; None: no emotion tag
    events: list[str]  # every event tagged, first seen first
    segments: list[TaggedSegment]


def _join(texts: list[str]) -> str:
    """Segment texts joined as FunASR joins them for punctuation: no space between CJK text."""
    out = ""
    for text in texts:
        if not text:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(text[0])):
            out += " "
        out += text
    return out


def _is_cjk(ch: str) -> bool:
    """Chinese, Japanese kana, CJK and full-width punctuation: written without spaces (Korean has them)."""
    return "\u3000" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"


def parse_rich_text(raw: str) -> tuple[str, SpeechTags]:
    """SenseVoice's tagged output -> (plain text, tags). Every `<|...|>` is removed from the text,
    wherever it is; each run of tags starts a segment, and the run's known tags describe it."""
    segments: list[TaggedSegment] = []
    lead = raw[: m.start()] if (m := _TAG_RUN.search(raw)) else raw
    if lead.strip():  # text before any tag (not what SenseVoice writes, but never dropped)
        segments.append(TaggedSegment(text=lead.strip()))
    for run in _TAG_RUN.finditer(raw):
        nxt = _TAG_RUN.search(raw, run.end())
        end = nxt.start() if nxt else len(raw)
        segment = TaggedSegment(text=" ".join(raw[run.end(): end].split()))
        for tag in _TAG.findall(run.group(0)):
            if tag in LANGUAGES and tag != "auto":
                segment.language = segment.language or tag
            elif tag in _EMOTIONS:
                segment.emotion = segment.emotion or _EMOTIONS[tag]
            elif tag in _EVENTS:
                if _EVENTS[tag] and _EVENTS[tag] not in segment.events:
                    segment.events.append(_EVENTS[tag])
            elif tag in _ITN:
                segment.itn = _ITN[tag] if segment.itn is None else segment.itn
        segments.append(segment)
    text = _join([s.text for s in segments])

    weight: dict[str, int] = {}  # language -> characters of text in it
    for s in segments:
        if s.language is not None:
            weight[s.language] = weight.get(s.language, 0) + len(s.text)
    spoken = {lang: w for lang, w in weight.items() if lang != "nospeech" and w > 0}
    language = max(spoken, key=spoken.get) if spoken else next(iter(weight), None)  # max keeps the first of ties

    emotions = [s.emotion for s in segments if s.emotion is not None]
    felt = [e for e in emotions if e != "neutral"]
    emotion = max(dict.fromkeys(felt), key=felt.count) if felt else ("neutral" if emotions else None)
    events = list(dict.fromkeys(e for s in segments for e in s.events))
    return text, SpeechTags(language=language, emotion=emotion, events=events, segments=segments)


# --- runner ------------------------------------------------------------------------------------



def checked_language(language) -> str | None:
    """A request's language as SenseVoice names it, or None (the runner's default); OpenAI-style
    ISO 639-1 codes ('zh', 'en', 'ja', 'ko') are SenseVoice's own, 'yue' is Cantonese."""
    if language is None or (isinstance(language, str) and not language.strip()):
        return None
    if not isinstance(language, str) or language.strip().lower() not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)} for SenseVoice, got {language!r}",
                           field="language")
    return language.strip().lower()


class SenseVoiceRunner:
    """One FunASR SenseVoice pipeline (with VAD if configured). Calls are serialized: AutoModel
    keeps per-call state on itself."""

    has_vad = False  # the VAD (if any) only cuts whole files here; no streaming turn detection

    def __init__(self, args: SenseVoiceArgs):
        self.args = args
        self.device = resolve_device(args.device)
        names = {f: funasr_model_name(f, getattr(args, f)) for f in ("model", "vad_model")}
        self._model = load_funasr(names, self.device, args.ncpu, args.max_single_segment_ms)
        kind = type(self._model.model).__name__
        if kind != "SenseVoiceSmall":
            raise ConfigError(f"{args.model!r} is a {kind} model, not SenseVoiceSmall", field="model")
        self._lock = threading.Lock()
        log.info("loaded SenseVoice %s (vad=%s) on %s", args.model, args.vad_model, self.device)

    def detect_speech(self, state: bytes | None, samples: np.ndarray, *, silence_ms: int,
                      final: bool = False) -> VadStep:
        raise no_streaming_vad(self.args.model)

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, hotwords: list[str] | None = None,
                   language: str | None = None) -> Transcript:
        return self.run(*self.check(samples, sample_rate, hotwords, language=language))

    def warmup(self) -> None:
        """Two seconds of quiet noise through VAD and model (FunASR's first call sets things up)."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, 2 * SAMPLE_RATE).astype(np.float32)
        self.run(noise)

    def check(self, samples, sample_rate: int, hotwords: list[str] | None,
              language: str | None = None) -> tuple[np.ndarray, str | None]:
        """The audio and language of a valid request; InvalidInput names the bad field. Hotwords are
        checked as every recognizer checks them, then dropped: SenseVoice has no hotword input."""
        checked_hotwords(hotwords, self.args.max_hotwords)
        return checked_audio(samples, sample_rate), checked_language(language)

    def run(self, wav: np.ndarray, language: str | None = None) -> Transcript:
        """Transcribe checked input (see `check`); one call at a time."""
        return self.run_tagged(wav, language)[0]

    def run_tagged(self, wav: np.ndarray, language: str | None = None) -> tuple[Transcript, SpeechTags]:
        """`run`, with the emotion and event tags that `Transcript` has no field for."""
        duration_s = len(wav) / SAMPLE_RATE
        language = language or self.args.language
        if len(wav) < _MIN_SAMPLES:
            return Transcript(text="", timestamps=None, duration_s=duration_s), SpeechTags(None, None, [], [])
        args = self.args
        with self._lock:
            results = self._model.generate(
                input=wav, language=language, use_itn=args.use_itn, batch_size_s=args.batch_size_s,
                merge_vad=args.merge_vad, merge_length_s=args.merge_length_s,
            )
        raw = str(results[0].get("text", "")) if results else ""  # no result: the VAD found no speech
        text, tags = parse_rich_text(raw)
        detected = tags.language if tags.language != "nospeech" else None
        used = detected or (language if language not in ("auto", "nospeech") else None)
        return Transcript(text=text, timestamps=None, duration_s=duration_s, language=used), tags



FAMILY = Family("funasr-sensevoice", "asr", SenseVoiceArgs, SenseVoiceRunner, check=check_threads_fit_the_cpus,
                estimate=estimate, path_fields=("model", "vad_model"), tiny={"sensevoice": "mmserve.tiny.sensevoice"},
                shipped={hub: key for hub, key in FUNASR_SHIPPED.items() if key == "fsmn-vad"})
