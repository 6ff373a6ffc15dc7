"""Streaming speech recognition with FunASR's online Paraformer: partial transcripts of a live turn.

Production weights: `iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online` (SCAMA
chunk encoder `SANMEncoderChunkOpt`, `ParaformerSANMDecoder`, CIF predictor). FunASR decodes it in
strides of `chunk_size[1]` x 60 ms (600 ms by default) with `chunk_size[2]` x 60 ms of look-ahead; the
encoder attends to `encoder_chunk_look_back` earlier chunks and the decoder to
`decoder_chunk_look_back`. The `cache` that carries all this between chunks stays in this replica,
one per live turn (`stream`): for the large model with FunASR's defaults it holds the keys and values
of 4 chunks in each of 50 encoder layers plus the decoder's, 12.6 MB pickled
(docs/bench/streaming-state.json), too much to send both ways with every 600 ms chunk. The ASR deployment routes a session's chunks back to the replica that holds its
stream (`deployments/routing.py`: rendezvous hashing of the session); a chunk that reaches a replica without
the stream raises `StreamLost`, and the caller replays the turn's audio so far (it keeps it for the
offline pass anyway), which rebuilds the stream there.

This is two-pass's first pass, as in FunASR's own 2pass server: its text is shown while the user
speaks, and the offline recognizer (Paraformer + punctuation) gives the turn's final text. `run`
also transcribes whole inputs (the ASR task's interface), streaming them through in one call.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput
from mmserve.protocol.asr import StreamLost, StreamStep, Transcript, VadStep
from mmserve.runners.family import Family
from mmserve.runners.paraformer import check_threads_fit_the_cpus, funasr_model_name, no_streaming_vad
from mmserve.runners.speech_input import SAMPLE_RATE, checked_audio, checked_hotwords

log = logging.getLogger(__name__)

FRAME_SAMPLES = 960  # FunASR's chunk_size counts 60 ms frames (6 fbank frames of 10 ms, stacked)
MAX_CHUNK_S = 30  # per stream call: a replay sends a whole turn so far


class StreamingAsrArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["funasr-paraformer-streaming"] = "funasr-paraformer-streaming"
    model: str = Field(description="online Paraformer folder or ModelScope id, e.g. "
                       "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    ncpu: int = Field(1, ge=1, description="torch CPU threads; FunASR sets this process-wide, so size it per replica")
    chunk_size: tuple[int, int, int] = Field(
        (0, 10, 5), description="FunASR's [left, chunk, look-ahead] in 60 ms frames: [0, 10, 5] decodes every 600 ms "
        "with 300 ms of look-ahead; [0, 8, 4] every 480 ms")
    encoder_chunk_look_back: int = Field(4, ge=0, description="earlier chunks the encoder's self-attention sees")
    decoder_chunk_look_back: int = Field(1, ge=0, description="earlier encoder chunks the decoder's attention sees")
    max_streams: int = Field(256, ge=1, description="live turns held per replica; the least recently fed beyond "
                             "this are dropped (their next chunk is replayed)")
    max_hotwords: int = Field(100, ge=0, description="most hotwords accepted per request (checked, not used)")

    @property
    def chunk_samples(self) -> int:
        return self.chunk_size[1] * FRAME_SAMPLES


@dataclass
class Stream:
    turn: str  # the turn's id: a stream is a (session, turn)
    cache: dict = field(default_factory=dict)  # FunASR's: encoder/decoder look-back, CIF and frontend state
    chunks: int = 0  # calls taken
    fed: int = 0  # samples taken
    texts: list[str] = field(default_factory=list)  # one per stride decoded


class StreamingParaformerRunner:
    """One online Paraformer and the live turns streaming through it (one call at a time: FunASR's
    AutoModel keeps per-call state on itself)."""

    has_vad = False

    def __init__(self, args: StreamingAsrArgs):
        self.args = args
        self.device = resolve_device(args.device)
        with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
            from funasr import AutoModel
        name = funasr_model_name("model", args.model)
        try:
            self._auto = AutoModel(model=name, device=self.device, ncpu=args.ncpu, disable_update=True,
                                   disable_pbar=True, log_level="WARNING")
        except Exception as exc:
            raise ConfigError(f"could not load FunASR model {args.model!r}: {exc}", field="model") from exc
        kind = type(self._auto.model).__name__
        if kind != "ParaformerStreaming":
            raise ConfigError(f"{args.model!r} is a {kind} model, not an online (streaming) Paraformer", field="model")
        self._streams: OrderedDict[tuple[str, str], Stream] = OrderedDict()  # by (session, turn)
        self._lock = threading.Lock()
        log.info("loaded streaming Paraformer %s on %s (chunk_size %s)", args.model, self.device, args.chunk_size)

    def warmup(self) -> None:
        noise = np.random.default_rng(0).normal(0.0, 0.01, 2 * SAMPLE_RATE).astype(np.float32)
        self.run(noise, None)

    # -- whole inputs (the ASR task's interface) ---------------------------------------------------------

    def check(self, samples, sample_rate: int, hotwords: list[str] | None) -> tuple[np.ndarray, None]:
        checked_hotwords(hotwords, self.args.max_hotwords)
        return checked_audio(samples, sample_rate), None

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE,
                   hotwords: list[str] | None = None) -> Transcript:
        return self.run(*self.check(samples, sample_rate, hotwords))

    def run(self, wav: np.ndarray, prepared: None = None) -> Transcript:
        stream = Stream("whole")
        with self._lock:
            self._decode(stream, wav, final=True)
        return Transcript(text=joined(stream.texts), timestamps=None, duration_s=len(wav) / SAMPLE_RATE)

    def detect_speech(self, state, samples, *, silence_ms: int, final: bool = False) -> VadStep:
        raise no_streaming_vad(self.args.model)

    # -- live turns --------------------------------------------------------------------------------------

    def stream(self, session: str, turn: str, seq: int, samples, final: bool = False) -> StreamStep:
        """The next audio of `session`'s turn `turn` (any length; FunASR decodes whole strides and keeps
        the rest for the next call). `seq` is this call's place in the turn: 0 starts (or restarts) it,
        and each call after must be the next, or StreamLost. `final` flushes the look-ahead and ends it."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidInput("seq must be a non-negative integer", field="seq")
        if isinstance(samples, np.ndarray) and samples.size > MAX_CHUNK_S * SAMPLE_RATE:
            raise InvalidInput(f"audio chunk is longer than {MAX_CHUNK_S} s", field="audio")
        if not isinstance(samples, np.ndarray) or samples.size or not final:
            samples = checked_audio(samples, SAMPLE_RATE, field="audio", min_seconds=0)
        key = (session, turn)  # a turn's final call may overlap the next turn's first
        with self._lock:
            stream = self._streams.get(key)
            if seq == 0:
                stream = Stream(turn)
            elif stream is None or stream.chunks != seq:
                held = "no stream" if stream is None else f"its stream at step {stream.chunks}"
                raise StreamLost(f"this replica holds {held} for turn {turn}, not step {seq}; replay the turn "
                                 "from seq 0", field="seq")
            self._streams.pop(key, None)
            self._decode(stream, samples, final=final)
            stream.chunks += 1
            if not final:
                self._streams[key] = stream  # most recently fed last
                while len(self._streams) > self.args.max_streams:
                    (dropped, _), _ = self._streams.popitem(last=False)
                    log.info("streaming ASR: dropped a stream of session %s (max_streams %d)", dropped,
                             self.args.max_streams)
        return StreamStep(text=joined(stream.texts), chunks=stream.chunks)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _decode(self, stream: Stream, samples: np.ndarray, final: bool) -> None:
        """Decode `samples` into the stream one stride at a time, at the same stride boundaries however
        the turn's audio was cut into calls (under the lock). FunASR post-processes each call's tokens
        on their own (a word piece that ends a call is dropped), so cutting at strides keeps a turn's
        text the same whether its chunks came one by one, late and together, or replayed at once."""
        import torch

        stride = self.args.chunk_samples
        started, pos, last = time.perf_counter(), 0, False
        while not last and (pos < len(samples) or final):  # a final call runs at least once, to flush
            piece = samples[pos: pos + stride - stream.fed % stride]
            pos += len(piece)
            stream.fed += len(piece)
            last = final and pos >= len(samples)
            with torch.no_grad():
                results = self._auto.generate(
                    input=piece, cache=stream.cache, is_final=last, chunk_size=list(self.args.chunk_size),
                    encoder_chunk_look_back=self.args.encoder_chunk_look_back,
                    decoder_chunk_look_back=self.args.decoder_chunk_look_back)
            if text := (str(results[0].get("text", "")).strip() if results else ""):
                stream.texts.append(text)
        log.debug("streaming ASR: %.0f ms of audio in %.1f ms", len(samples) / 16,
                  (time.perf_counter() - started) * 1000)


def joined(texts: list[str]) -> str:
    """Chunk texts as FunASR's own streaming clients join them (end to end), with the space FunASR's
    postprocessing puts between two English words when a chunk boundary falls between them."""
    out = ""
    for text in filter(None, texts):
        out += " " + text if out and out[-1].isascii() and out[-1].isalnum() and text[0].isascii() \
            and text[0].isalnum() else text
    return out


FAMILY = Family("funasr-paraformer-streaming", "asr", StreamingAsrArgs, StreamingParaformerRunner,
                check=check_threads_fit_the_cpus, tiny={"funasr-online": "mmserve.tiny.paraformer_streaming"},
                streams=True)
