"""The `realtime` route: one simulated user speaking one turn over `/v1/realtime` (WebSocket).
`realtime-transcription` is the same in a transcription session (`?intent=transcription`): the turn
ends at its transcript, and there is no reply.

When the server sends partial transcripts (`...input_audio_transcription.delta`, with mmserve's
`audio_end_ms`: where in the input the audio it covers ends), each one's delay runs from sending the
append that carried that sample to receiving the delta; a turn reports its deltas' median and max.

The user opens a session, asks for server VAD with the given `silence_duration_ms`, streams a
recording as PCM16 at 24 kHz in small chunks at real-time pace, then keeps streaming silence at the
same pace (as a microphone would) until the reply is done. Every figure is measured from the end
of the user's speech: the wall time the last speech sample was sent (the clip's trailing silence
is cut off first, so that moment is when the talking stopped). Time to first audio therefore
includes the silence the server must hear before it ends the turn.

Uses the `websockets` package's blocking client, which locust's gevent patching turns cooperative.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import soundfile as sf
import soxr
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from bench.loadtest.payloads import DATA

RATE = 24000  # OpenAI's audio/pcm rate, what the session is told the input is
CLIPS = {"en": DATA / "speech_en.wav", "zh": DATA / "speech_zh.wav"}
# The server events a turn must bring, and the figure each one's arrival gives (ms after the end of speech).
WATCHED = {
    "input_audio_buffer.speech_started": None,
    "input_audio_buffer.speech_stopped": "speech_stopped_after_speech_ms",
    "conversation.item.input_audio_transcription.completed": "transcript_after_speech_ms",
    "response.created": "response_created_after_speech_ms",
    "response.output_audio.delta": "first_audio_after_speech_ms",
    "response.done": "response_done_after_speech_ms",
}
TRANSCRIBED = "conversation.item.input_audio_transcription.completed"
PARTIAL = "conversation.item.input_audio_transcription.delta"
WATCHED_TRANSCRIPTION = {kind: WATCHED[kind] for kind in ("input_audio_buffer.speech_started",
                                                          "input_audio_buffer.speech_stopped", TRANSCRIBED)}


class TurnFailed(RuntimeError):
    """A turn that did not complete; `status` is the handshake's HTTP status when it was refused,
    503 when the server refused the session for its limit, else 101 (the session had opened)."""

    def __init__(self, message: str, status: int = 101):
        super().__init__(message[:300])
        self.status = status


@dataclass(frozen=True)
class Speech:
    name: str
    pcm: bytes  # PCM16 LE mono at RATE, trimmed to the speech itself
    seconds: float


@lru_cache(maxsize=None)
def speech_clip(name: str) -> Speech:
    """A recording resampled to 24 kHz PCM16, its leading and trailing silence cut off (frames of
    10 ms whose RMS is under 1 % of the loudest frame's)."""
    if name not in CLIPS:
        raise ValueError(f"unknown realtime clip {name!r}: use {', '.join(CLIPS)}")
    samples, rate = sf.read(CLIPS[name], dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1), rate, RATE)
    frame = RATE // 100
    rms = np.sqrt([np.mean(mono[i:i + frame] ** 2) for i in range(0, len(mono), frame)])
    loud = np.flatnonzero(rms >= 0.01 * rms.max())
    speech = mono[loud[0] * frame:(loud[-1] + 1) * frame]
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()
    return Speech(name, pcm, len(speech) / RATE)


def ws_url(base_url: str, model: str | None, transcription: bool = False) -> str:
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/") + "/v1/realtime"
    query = "&".join(q for q in (f"model={model}" if model else "", "intent=transcription" if transcription else "")
                     if q)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, path, query, ""))


def session_update(silence_ms: int, voice: str | None, transcription: bool = False) -> dict:
    audio: dict = {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                             "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms}}}
    if voice and not transcription:
        audio["output"] = {"voice": voice}
    kind = "transcription" if transcription else "realtime"
    return {"type": "session.update", "session": {"type": kind, "audio": audio}}


@dataclass
class Turn:
    """What the receiving side saw of one turn: arrival times (perf_counter) of the watched events."""

    transcription: bool = False  # a transcription session: the transcript ends the turn
    seen: dict[str, float] = field(default_factory=dict)
    audio_bytes: int = 0
    audio_end_ms: float | None = None  # the server's idea of where speech ended, on the input's timeline
    appends: list[tuple[float, float]] = field(default_factory=list)  # (input position s, sent at) per append
    partials: list[tuple[float, float]] = field(default_factory=list)  # (received at, its audio_end_ms)
    status: str | None = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def take(self, event: dict, now: float) -> None:
        kind = event.get("type")
        if kind in WATCHED and kind not in self.seen:
            self.seen[kind] = now
        if kind == "response.output_audio.delta":
            self.audio_bytes += len(base64.b64decode(event["delta"]))
        elif kind == PARTIAL and "audio_end_ms" in event:
            self.partials.append((now, float(event["audio_end_ms"])))
        elif kind == "input_audio_buffer.speech_stopped" and self.audio_end_ms is None:
            self.audio_end_ms = float(event["audio_end_ms"])
        elif kind == "response.done":
            self.status = event["response"]["status"]
            self.finished.set()
        elif kind == TRANSCRIBED and self.transcription:
            self.status = "completed"
            self.finished.set()
        elif kind == "error":
            self.error = f"error event: {json.dumps(event.get('error'), ensure_ascii=False)}"[:300]
            self.finished.set()


def receive(ws, turn: Turn) -> None:
    try:
        for message in ws:
            turn.take(json.loads(message), time.perf_counter())
    except ConnectionClosed:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        turn.error = f"bad event: {type(exc).__name__}: {exc}"[:300]
    if not turn.finished.is_set():
        turn.error = turn.error or "the server closed the session before the turn ended"
        turn.finished.set()


def expect(ws, kind: str, timeout_s: float) -> dict:
    event = json.loads(ws.recv(timeout=timeout_s))
    if event.get("type") != kind:
        limited = (event.get("error") or {}).get("code") == "session_limit"
        raise TurnFailed(f"expected {kind}, got {json.dumps(event, ensure_ascii=False)}", 503 if limited else 101)
    return event


def stream_at_real_time(ws, pcm: bytes, chunk_ms: int, start: float, until=None,
                        appends: list | None = None, position_s: float = 0.0) -> float:
    """Send `pcm` in chunk_ms pieces, each once its last sample is due on the real-time clock that
    starts at `start` (as a microphone delivers them); with `until`, silence instead, until `until()`
    is true. Returns the clock position (seconds) reached. `appends` gets (input position after the
    piece, send time) per piece, the input's position starting at `position_s`."""
    step = RATE * chunk_ms // 1000 * 2
    offset, sent_s = 0, 0.0
    silence = bytes(step)
    while (until is None and offset < len(pcm)) or (until is not None and not until()):
        piece = pcm[offset:offset + step] if until is None else silence
        sent_s += len(piece) / 2 / RATE
        time.sleep(max(0.0, start + sent_s - time.perf_counter()))
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}))
        if appends is not None:
            appends.append((position_s + sent_s, time.perf_counter()))
        offset += len(piece)
    return sent_s


def one_turn(base_url: str, speech: Speech, *, silence_ms: int, chunk_ms: int, timeout_s: float,
             api_key: str | None = None, model: str | None = None, voice: str | None = None,
             transcription: bool = False) -> dict:
    """Speak `speech` once; the figures of the turn (ms after the end of speech, see WATCHED), or
    TurnFailed naming what went wrong."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        ws = connect(ws_url(base_url, model, transcription), additional_headers=headers, open_timeout=timeout_s,
                     max_size=None, subprotocols=["realtime"])
    except InvalidStatus as exc:
        raise TurnFailed(f"handshake refused: HTTP {exc.response.status_code}", exc.response.status_code) from None
    with ws:
        expect(ws, "session.created", timeout_s)
        ws.send(json.dumps(session_update(silence_ms, voice, transcription)))
        expect(ws, "session.updated", timeout_s)
        turn = Turn(transcription)
        receiver = threading.Thread(target=receive, args=(ws, turn), daemon=True)
        receiver.start()
        start = time.perf_counter()
        try:
            spoken_s = stream_at_real_time(ws, speech.pcm, chunk_ms, start, appends=turn.appends)
            speech_end = time.perf_counter()  # the chunk holding the last speech sample has just left
            deadline = speech_end + timeout_s
            stream_at_real_time(ws, b"", chunk_ms, start + spoken_s, appends=turn.appends, position_s=spoken_s,
                                until=lambda: turn.finished.is_set() or time.perf_counter() > deadline)
        except ConnectionClosed:  # the server closed mid-turn: what it sent before closing says why
            receiver.join(timeout=timeout_s)
            raise TurnFailed(turn.error or "the server closed the session mid-turn") from None
        if not turn.finished.is_set():
            raise TurnFailed(f"the turn did not end within {timeout_s:g} s of the end of speech")
    receiver.join(timeout=5)
    return turn_figures(turn, speech, speech_end, silence_ms)


def turn_figures(turn: Turn, speech: Speech, speech_end: float, silence_ms: int) -> dict:
    if turn.error:
        raise TurnFailed(turn.error)
    if turn.status != "completed":
        raise TurnFailed(f"response.done with status {turn.status!r}")
    watched = WATCHED_TRANSCRIPTION if turn.transcription else WATCHED
    missing = [kind for kind in watched if kind not in turn.seen]
    if missing:
        raise TurnFailed(f"no {', '.join(missing)} in the turn")
    figures = {name: round((turn.seen[kind] - speech_end) * 1000, 2) for kind, name in watched.items() if name}
    stopped, transcribed = figures["speech_stopped_after_speech_ms"], figures["transcript_after_speech_ms"]
    figures.update(recognition_after_stop_ms=round(transcribed - stopped, 2))  # where the time after speech goes
    if not turn.transcription:
        figures.update(first_audio_after_response_ms=round(figures["first_audio_after_speech_ms"]
                                                           - figures["response_created_after_speech_ms"], 2))
    if delays := partial_delays(turn):
        figures.update(partials=float(len(delays)), partial_delay_ms=round(float(np.median(delays)), 2),
                       partial_delay_max_ms=round(max(delays), 2))
    figures.update(input_audio_s=round(speech.seconds, 3), audio_s=turn.audio_bytes / 2 / RATE,
                   silence_duration_ms=float(silence_ms),
                   # where the server heard speech end, against where it did: VAD's own error
                   vad_end_offset_ms=round(turn.audio_end_ms - speech.seconds * 1000, 2))
    return figures


def partial_delays(turn: Turn) -> list[float]:
    """Each partial's delay (ms): from sending the append that carried the last sample it covers to
    receiving it."""
    delays = []
    for received, end_ms in turn.partials:
        sent = next((at for position, at in turn.appends if position * 1000 >= end_ms - 1), None)
        if sent is not None:
            delays.append((received - sent) * 1000)
    return delays
