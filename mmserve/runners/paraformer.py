"""Speech recognition with FunASR: Paraformer (SeACo for hotwords and timestamps), FSMN-VAD, CT-Punc.

The VAD cuts long audio into segments the ASR model can take; the punctuation model restores
punctuation on the joined text. Input is already-decoded mono float32 at 16 kHz
(`mmserve.media.decode_audio` does the decoding). The same VAD folder also runs as a streaming model
for live turn detection (`detect_speech`), with its session state carried by the caller.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.asr import Transcript, VadStep
from mmserve.runners.family import Family
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords
from mmserve.sizing.estimates import GB, ModelEstimate, funasr_config, model_folder, sizes, unknown, weight_bytes

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


def funasr_model_name(field: str, name: str | None) -> str | None:
    """A path-looking name must be an existing folder; anything else goes to FunASR as a hub id."""
    if not name or not (name.startswith(("/", ".", "~")) or Path(name).exists()):
        return name
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{field} folder {name!r} does not exist", field=field)
    return str(path)


def load_funasr(names: dict[str, str | None], device: str, ncpu: int, max_single_segment_ms: int | None):
    """FunASR's AutoModel over these folders or ids (model, vad_model, punc_model), quiet and never
    asking PyPI for updates; a failure is a ConfigError naming `model`."""
    with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
        from funasr import AutoModel

    vad_kwargs = {}
    if max_single_segment_ms is not None:
        vad_kwargs["max_single_segment_time"] = max_single_segment_ms
    try:
        return AutoModel(
            **names,
            vad_kwargs=vad_kwargs,
            device=device,
            ncpu=ncpu,
            disable_update=True,  # otherwise every load queries PyPI with no timeout
            disable_pbar=True,
            log_level="WARNING",  # AutoModel calls logging.basicConfig with this level
        )
    except Exception as exc:
        raise ConfigError(f"could not load FunASR model {names['model']!r}: {exc}", field="model") from exc


class AsrRunner:
    """One FunASR pipeline. Calls are serialized: AutoModel keeps per-call state on itself."""

    def __init__(self, args: AsrArgs):
        self.args = args
        self.device = resolve_device(args.device)
        names = {f: funasr_model_name(f, getattr(args, f)) for f in ("model", "vad_model", "punc_model")}
        self._model = load_funasr(names, self.device, args.ncpu, args.max_single_segment_ms)
        self._lock = threading.Lock()
        # Turn detection gets its own copy of the VAD and its own lock, so a long transcription
        # does not hold up a live stream's 100 ms chunks.
        self._stream_vad = StreamingVad(names["vad_model"], self.device, args.ncpu) if names["vad_model"] else None
        log.info("loaded ASR %s (vad=%s, punc=%s) on %s", args.model, args.vad_model, args.punc_model, self.device)

    @property
    def has_vad(self) -> bool:
        return self._stream_vad is not None

    def detect_speech(self, state: bytes | None, samples: np.ndarray, *, silence_ms: int,
                      final: bool = False) -> VadStep:
        """Feed the next chunk of a live 16 kHz stream (any length) to the streaming VAD; `state` is
        the previous step's (None starts a stream). `silence_ms` of silence ends a turn. `final` ends
        the stream: an open turn gets its stop, and the returned state starts a new stream at 0 ms."""
        if self._stream_vad is None:
            raise no_streaming_vad(self.args.model)
        return self._stream_vad.step(state, samples, silence_ms=silence_ms, final=final)

    def transcribe(
        self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, hotwords: list[str] | None = None
    ) -> Transcript:
        return self.run(*self.check(samples, sample_rate, hotwords))

    def warmup(self) -> None:
        """Two seconds of quiet noise through VAD, recognizer and punctuation: FunASR's first
        generate() is several times slower than the rest (lazy set-up, first kernel calls)."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, 2 * SAMPLE_RATE).astype(np.float32)
        self.run(noise, None)
        if self._stream_vad is not None:
            state = None
            for chunk in np.split(noise[: SAMPLE_RATE // 2], 5):
                state = self.detect_speech(state, chunk, silence_ms=500).state

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


MIN_SILENCE_MS, MAX_SILENCE_MS = 100, 5000
MAX_CHUNK_S = 10  # per detect_speech call; FunASR treats chunks of 15 s or more as whole files


def no_streaming_vad(model: str) -> InvalidInput:
    return InvalidInput(f"model {model!r} has no streaming VAD; use a funasr-paraformer model with vad_model "
                        "for turn detection", field="turn_detection")


class StreamingVad:
    """FunASR's online FSMN-VAD with the session state outside the replica.

    FunASR keeps a stream's state in a `cache` dict (frontend remainders, FSMN memory, the turn state
    machine, undecided frames). It is serialized to bytes between calls, so the replica holds nothing
    per stream and any replica can take a stream's next chunk. The bytes are for replicas only: the
    gateway keeps them server-side and never unpickles them, and never takes them from a client.
    """

    def __init__(self, folder: str, device: str, ncpu: int):
        from funasr import AutoModel

        try:
            self._auto = AutoModel(model=folder, disable_update=True, disable_pbar=True, device=device,
                                   ncpu=ncpu, log_level="WARNING")
        except Exception as exc:
            raise ConfigError(f"could not load the streaming VAD {folder!r}: {exc}", field="vad_model") from exc
        self._model = self._auto.model
        self._device = device
        self._lock = threading.Lock()

    def step(self, state: bytes | None, samples, *, silence_ms: int, final: bool) -> VadStep:
        import torch  # lazily, like funasr: the gateway reads this module's args without torch

        samples = torch.from_numpy(_checked_chunk(samples))
        silence_ms = _checked_silence(silence_ms)
        if state is not None and not isinstance(state, bytes):
            raise InvalidInput("state must be the bytes of the previous step, or None", field="state")
        opts = self._model.vad_opts
        with self._lock:
            cache = self._load(state) if state else self._model.init_cache({})
            # The model's options are shared by all streams and init_cache (which runs again after a
            # final chunk) reads max_end_silence_time from them; the stream's own threshold lives in its
            # stats, so both are set here, under the lock, for this call only.
            opts.max_end_silence_time = silence_ms
            cache["stats"].max_end_sil_frame_cnt_thresh = max(silence_ms - opts.speech_to_sil_time_thres, 0)
            pending = len(cache["prev_samples"]) + len(samples)
            if pending < _MIN_SAMPLES and not final:
                # Less than one fbank frame: held back (FunASR's frontend is set up by a call with a frame)
                cache["prev_samples"] = torch.cat((cache["prev_samples"], samples))
                segments = []
            else:
                # One pass over everything pending (FunASR cuts the input into chunk_size strides and
                # keeps the remainder for the next call); a final pass also takes the remainder.
                chunk_ms = pending * 1000 // SAMPLE_RATE + int(final)
                kwargs = {**self._auto.kwargs, "cache": cache, "is_final": final, "chunk_size": chunk_ms,
                          "dynamic_silence": False}  # the fixed silence_ms, not FunASR's length-based schedule
                with torch.no_grad():
                    results, _ = self._model.inference(data_in=[samples], key=["stream"], **kwargs)
                segments = results[0]["value"]
            state = self._dump(cache)
        events = []
        for begin, end in segments:
            events += [("start", int(begin))] if begin != -1 else []
            events += [("stop", int(end))] if end != -1 else []
        return VadStep(state=state, events=events)

    def _load(self, state: bytes) -> dict:
        import torch

        try:
            cache = torch.load(io.BytesIO(state), map_location=self._place, weights_only=False)
            stats = cache["stats"]
        except Exception as exc:  # anything unpickling can raise: the bytes are not a state
            raise InvalidInput("state is not a VAD state this model returned", field="state") from exc
        if stats.scores is not None:  # back to the width the encoder's next scores are joined to
            full = stats.scores.new_zeros((*stats.scores.shape[:2], self._model.encoder.output_size()))
            full[..., : stats.scores.shape[2]] = stats.scores
            stats.scores = full
        if stats.data_buf_all is not None:  # the view of it that FunASR keeps beside it
            shift = self._model.vad_opts.frame_in_ms * SAMPLE_RATE // 1000
            stats.data_buf = stats.data_buf_all[max(stats.data_buf_start_frame - stats.last_drop_frames, 0) * shift:]
        return cache

    def _place(self, storage, location: str):
        """FunASR keeps waveforms on the CPU and scores and FSMN memory on the model's device: CPU
        tensors stay put, device tensors go to this replica's device (another replica's cuda:N)."""
        from torch.serialization import default_restore_location

        return storage if location == "cpu" else default_restore_location(storage, self._device)

    def _dump(self, cache: dict) -> bytes:
        """The cache as bytes, without what the next call rebuilds: this chunk's waveforms and
        features, the view `data_buf`, and the score columns the state machine never reads (it reads
        the silence classes `sil_pdf_ids` only; the rest are 99% of the scores, ~1 KB a frame)."""
        import torch

        def compact(t):  # a view saves its whole storage (e.g. all of a long chunk): copy out the view
            return t.clone() if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > t.nbytes else t

        frontend, stats = cache["frontend"], cache["stats"]
        if frontend:  # empty until the frontend's first frame sets it up
            frontend.update(waveforms=None, aligned_waveforms=torch.empty(0), fbanks=None, fbanks_lens=None)
            for key, value in frontend.items():
                frontend[key] = [compact(v) for v in value] if isinstance(value, list) else compact(value)
        cache["encoder"] = {key: compact(value) for key, value in cache["encoder"].items()}
        cache["prev_samples"] = compact(cache["prev_samples"])
        stats.waveform = stats.data_buf = None
        stats.data_buf_all = compact(stats.data_buf_all)
        if stats.scores is not None:
            stats.scores = stats.scores[..., : max(stats.sil_pdf_ids) + 1].clone()
        buf = io.BytesIO()
        torch.save(cache, buf)
        return buf.getvalue()


def _checked_chunk(samples) -> np.ndarray:
    if isinstance(samples, np.ndarray) and samples.size > MAX_CHUNK_S * SAMPLE_RATE:
        raise InvalidInput(f"audio chunk is longer than {MAX_CHUNK_S} s", field="audio")
    return checked_audio(samples, SAMPLE_RATE, field="audio", min_seconds=0)  # a live chunk may be short


def _checked_silence(silence_ms) -> int:
    if isinstance(silence_ms, bool) or not isinstance(silence_ms, (int, np.integer)) \
            or not MIN_SILENCE_MS <= silence_ms <= MAX_SILENCE_MS:
        raise InvalidInput(f"silence_ms must be an integer from {MIN_SILENCE_MS} to {MAX_SILENCE_MS}",
                           field="silence_ms")
    return int(silence_ms)


def check_threads_fit_the_cpus(args: AsrArgs, deployment) -> None:
    """FunASR sets torch's thread count for the whole process: more threads than the replica's CPUs
    oversubscribe the node and slow every replica beside it."""
    cpus = max(1, math.ceil(deployment.num_cpus))
    if args.ncpu > cpus:
        raise ValueError(f"runner.ncpu={args.ncpu} is more than the replica's num_cpus "
                         f"({deployment.num_cpus}); set ncpu <= {cpus}")


FUNASR_SHIPPED = {  # Paraformer's recognizer and the FSMN-VAD that cuts its input (any FunASR family's)
    "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch": "paraformer-large",
    "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch": "fsmn-vad",
}


def estimate(args, image_side: int) -> ModelEstimate:
    """A FunASR model entry (Paraformer, SenseVoice): fp32 weights of every folder in its family's
    path fields, plus the encoder's activations over one batch of VAD segments."""
    runner = args.runner
    found = {name: sizes(model, args.family.shipped) for name in args.family.path_fields if (model := getattr(runner, name, None))}
    if found["model"] is None:
        return unknown(args, "no config to size the recognizer")
    parts = [p for ps in found.values() if ps for p in ps]
    notes = [f"{name} {getattr(runner, name)} not sized (no shipped config): not in the weights"
             for name, ps in found.items() if ps is None]
    config = funasr_config(model_folder(runner.model, args.family.shipped))
    encoder = config.get("encoder_conf", {})
    frames = runner.batch_size_s * 100 // config.get("frontend_conf", {}).get("lfr_n", 6)
    width = encoder.get("linear_units", 2048) + 3 * encoder.get("output_size", 512)
    activation = frames * width * 4 * 2
    return ModelEstimate(
        "asr", args.name, runner.model, weight_bytes(parts, "float32") / GB, activation / GB,
        f"fp32 (FunASR); {runner.batch_size_s} s of VAD segments per batch = {frames} LFR frames x "
        f"{width} encoder activations, twice", notes)


FAMILY = Family("funasr-paraformer", "asr", AsrArgs, AsrRunner, check=check_threads_fit_the_cpus, estimate=estimate,
                path_fields=("model", "vad_model", "punc_model"), tiny={"funasr": "mmserve.tiny.funasr"},
                shipped=FUNASR_SHIPPED)
