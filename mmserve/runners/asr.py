"""Speech recognition with FunASR: Paraformer (SeACo for hotwords and timestamps), FSMN-VAD, CT-Punc.

The VAD cuts long audio into segments the ASR model can take; the punctuation model restores
punctuation on the joined text. Input is already-decoded mono float32 at 16 kHz
(`mmserve.media.decode_audio` does the decoding).
"""

from __future__ import annotations

import contextlib
import math
import io
import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.asr import Transcript
from mmserve.runners.family import Family
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords

log = logging.getLogger(__name__)

_MIN_SAMPLES = 400  # one 25 ms fbank frame: FunASR fails on less, and there is no speech in it


class AsrArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["funasr-paraformer"] = "funasr-paraformer"
    model: str = Field(description="ASR model folder or ModelScope id (SeACo-Paraformer gives timestamps and hotwords)")
    vad_model: str | None = Field(None, description="FSMN-VAD folder or id; None feeds whole inputs to the ASR model")
    punc_model: str | None = Field(None, description="CT-Transformer punctuation folder or id; None leaves text unpunctuated")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    ncpu: int = Field(1, ge=1, description="torch CPU threads; FunASR sets this process-wide, so size it per replica")
    batch_size_s: int = Field(300, ge=1, description="seconds of VAD segments decoded per ASR batch on GPU")
    max_single_segment_ms: int | None = Field(
        None, ge=1000, description="longest VAD segment in ms; None keeps the VAD model's own setting"
    )
    max_hotwords: int = Field(100, ge=0, description="most hotwords accepted per request")


def _resolve(field: str, name: str | None) -> str | None:
    """A path-looking name must be an existing folder; anything else goes to FunASR as a hub id."""
    if not name or not (name.startswith(("/", ".", "~")) or Path(name).exists()):
        return name
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{field} folder {name!r} does not exist", field=field)
    return str(path)


class AsrRunner:
    """One FunASR pipeline. Calls are serialized: AutoModel keeps per-call state on itself."""

    def __init__(self, args: AsrArgs):
        self.args = args
        self.device = resolve_device(args.device)
        names = {f: _resolve(f, getattr(args, f)) for f in ("model", "vad_model", "punc_model")}
        with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
            from funasr import AutoModel

        vad_kwargs = {}
        if args.max_single_segment_ms is not None:
            vad_kwargs["max_single_segment_time"] = args.max_single_segment_ms
        try:
            self._model = AutoModel(
                **names,
                vad_kwargs=vad_kwargs,
                device=self.device,
                ncpu=args.ncpu,
                disable_update=True,  # otherwise every load queries PyPI with no timeout
                disable_pbar=True,
                log_level="WARNING",  # AutoModel calls logging.basicConfig with this level
            )
        except Exception as exc:
            raise ConfigError(f"could not load FunASR model {args.model!r}: {exc}", field="model") from exc
        self._lock = threading.Lock()
        log.info("loaded ASR %s (vad=%s, punc=%s) on %s", args.model, args.vad_model, args.punc_model, self.device)

    def transcribe(
        self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, hotwords: list[str] | None = None
    ) -> Transcript:
        return self.run(*self.check(samples, sample_rate, hotwords))

    def warmup(self) -> None:
        """Two seconds of quiet noise through VAD, recognizer and punctuation: FunASR's first
        generate() is several times slower than the rest (lazy set-up, first kernel calls)."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, 2 * SAMPLE_RATE).astype(np.float32)
        self.run(noise, None)

    def check(self, samples, sample_rate: int, hotwords: list[str] | None) -> tuple[np.ndarray, str | None]:
        """The audio and FunASR hotword string of a valid request; InvalidInput names the bad field."""
        return checked_audio(samples, sample_rate), self._hotword_string(hotwords)

    def _hotword_string(self, hotwords: list[str] | None) -> str | None:
        """FunASR's single space-separated hotword string.

        FunASR reads a hotword string that is an existing `.txt` path as a file and one starting
        with "http" as a URL to download, so words that look like either are refused.
        """
        words = checked_hotwords(hotwords, self.args.max_hotwords, forbidden=r"[\s/\\]",
                                 rule="no spaces or slashes")
        if words is None:
            return None
        joined = " ".join(words)
        if joined.startswith("http") or joined.endswith(".txt"):
            raise InvalidInput("hotwords may not start with 'http' or end with '.txt'", field="hotwords")
        return joined

    def run(self, wav: np.ndarray, hotword: str | None) -> Transcript:
        """Transcribe checked input (see `check`); one call at a time."""
        duration_s = len(wav) / SAMPLE_RATE
        if len(wav) < _MIN_SAMPLES:
            return Transcript(text="", timestamps=None, duration_s=duration_s)
        with self._lock:
            results = self._model.generate(input=wav, batch_size_s=self.args.batch_size_s, hotword=hotword)
        # FunASR drops an input whose text came out empty (no speech, or random weights).
        if not results:
            return Transcript(text="", timestamps=None, duration_s=duration_s)
        result = results[0]
        stamps = result.get("timestamp")
        timestamps = None
        if stamps is not None:
            # The CIF timestamps carry a fixed offset that can reach a little past either end.
            end_ms = int(duration_s * 1000)
            timestamps = [(min(max(int(s), 0), end_ms), min(max(int(e), 0), end_ms)) for s, e in stamps]
        return Transcript(text=str(result.get("text", "")).strip(), timestamps=timestamps, duration_s=duration_s)


def check_threads_fit_the_cpus(args: AsrArgs, deployment) -> None:
    """FunASR sets torch's thread count for the whole process: more threads than the replica's CPUs
    oversubscribe the node and slow every replica beside it."""
    cpus = max(1, math.ceil(deployment.num_cpus))
    if args.ncpu > cpus:
        raise ValueError(f"runner.ncpu={args.ncpu} is more than the replica's num_cpus "
                         f"({deployment.num_cpus}); set ncpu <= {cpus}")


FAMILY = Family("funasr-paraformer", "asr", AsrArgs, AsrRunner, check=check_threads_fit_the_cpus)
