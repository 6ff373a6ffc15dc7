"""Turn detection inside the realtime session: Silero VAD's real ONNX weights on onnxruntime.

It runs in the gateway replica that holds the WebSocket, so listening costs no Serve call: one
model step per 32 ms window, about 0.2 ms of one core. Torch-free: the weights are read from the
`silero-vad` wheel's files through package metadata, never by importing it (its `__init__` imports
torch). The start/stop logic is Silero's own `VADIterator`: speech starts at the first window at
or above `threshold`, and ends once the probability has stayed below `threshold - 0.15` for
`silence_duration_ms`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

RATE = 16000
WINDOW = 512  # samples per model step at 16 kHz (32 ms), what the ONNX model was exported for
CONTEXT = 64  # the previous window's last samples, prepended to each step
SPEECH_PAD_MS = 30  # kept after the last speech window (VADIterator's speech_pad_ms)
SILERO_ONNX = "silero_vad/data/silero_vad.onnx"


def silero_onnx_path() -> Path:
    """The ONNX file inside the installed `silero-vad` wheel."""
    try:
        path = Path(str(metadata.distribution("silero-vad").locate_file(SILERO_ONNX)))
    except metadata.PackageNotFoundError:
        raise RuntimeError("the silero-vad package is not installed (pip install silero-vad); "
                           "or set gateway.realtime.turn_detector: asr") from None
    if not path.is_file():
        raise RuntimeError(f"silero-vad is installed but {SILERO_ONNX} is missing from it")
    return path


class SileroModel:
    """One ONNX session shared by every session of the process; each session keeps its own state."""

    def __init__(self, path: str | Path | None = None):
        import onnxruntime as ort  # only where a session is held: config and tests need not load it

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one small step; threads only add latency
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path or silero_onnx_path()), options,
                                            providers=["CPUExecutionProvider"])
        self._rate = np.array(RATE, dtype=np.int64)

    def step(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """Speech probability of one window (CONTEXT + WINDOW samples) and the state that follows it."""
        prob, state = self.session.run(None, {"input": window[None, :], "state": state, "sr": self._rate})
        return float(prob[0, 0]), state


@functools.cache
def silero_model() -> SileroModel:
    return SileroModel()


@dataclass
class TurnDetector:
    """One session's turn detection: `feed` 16 kHz samples, get ("start" | "stop", sample) events.

    Samples count from the first one fed. A start is moved back by `prefix_padding_ms` (never before
    the first sample), so the turn keeps the onset the model needed a window to hear.
    """

    model: SileroModel
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    heard: int = 0  # samples judged so far
    speaking: bool = False
    _state: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, 128), np.float32))
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    _pending: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    _silence_from: int | None = None

    def feed(self, samples: np.ndarray) -> list[tuple[str, int]]:
        self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        events = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            prob, self._state = self.model.step(np.concatenate([self._context, window]), self._state)
            self._context = window[-CONTEXT:]
            start, self.heard = self.heard, self.heard + WINDOW
            if event := self._judge(prob, start):
                events.append(event)
        return events

    @property
    def settled(self) -> int:
        """Samples surely inside the turn, while speaking: up to a pause that may yet end it (a stop
        there ends the turn SPEECH_PAD_MS after the pause began)."""
        if self._silence_from is None:
            return self.heard
        return min(self.heard, self._silence_from + SPEECH_PAD_MS * RATE // 1000)

    def _judge(self, prob: float, start: int) -> tuple[str, int] | None:
        if prob >= self.threshold:
            self._silence_from = None
            if not self.speaking:
                self.speaking = True
                return "start", max(0, start - self.prefix_padding_ms * RATE // 1000)
            return None
        if not self.speaking or prob >= max(0.01, self.threshold - 0.15):
            return None
        if self._silence_from is None:
            self._silence_from = start
        if self.heard - self._silence_from >= self.silence_duration_ms * RATE // 1000:
            self.speaking = False
            end, self._silence_from = self._silence_from + SPEECH_PAD_MS * RATE // 1000, None
            return "stop", end
        return None
