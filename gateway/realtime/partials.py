"""Partial transcripts of the turn under way, from a streaming ASR model: two-pass's first pass.

While the user speaks, the turn's audio goes to the streaming model (`deployments/asr.py: stream`) in
whole chunks of its stride (600 ms by default), one call in flight per turn and in order; audio that
arrives while a call is out goes with the next. Each answer is the turn's text so far, and what it
adds is sent as `conversation.item.input_audio_transcription.delta`. When the turn ends, the rest goes
with `final` (FunASR flushes its look-ahead); the turn's final text comes from the offline model.

The stream's state stays in the replica that took the turn's first chunk (Serve routes the session
back to it). A replica that lost it (it died and the call went to another, or Serve routed elsewhere)
answers StreamLost, and the turn's audio so far is sent again from seq 0: the stream is rebuilt there
and the turn goes on. Any other failure stops this turn's partials (logged); the final text still
comes from the offline pass, and the next turn tries again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import numpy as np

from graphs.stages import Stages
from mmserve.errors import MMServeError
from mmserve.protocol.asr import StreamLost

log = logging.getLogger("ray.serve.mmserve.realtime")

RATE = 16000


class LivePartials:
    """One turn's partial transcripts. `feed` audio as it comes, `finish` with the turn's audio at its
    end, and await `done` before the turn's final text is sent (every delta precedes `.completed`)."""

    def __init__(self, handle, stages: Stages, *, session: str, turn: str, chunk_samples: int,
                 emit: Callable[[str, int], Awaitable[None]]):
        self._call = handle.options(multiplexed_model_id=session).stream
        self._stages, self.turn, self._chunk, self._emit = stages, turn, chunk_samples, emit
        self._audio: list[np.ndarray] = []  # everything fed, for a replay
        self.fed = 0  # samples fed
        self._sent = 0  # samples the model has taken
        self._seq = 0
        self._ended = False
        self._shown = ""
        self.failed: MMServeError | None = None
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._run())

    def feed(self, samples: np.ndarray) -> None:
        if self._ended or not len(samples):
            return
        self._audio.append(samples)
        self.fed += len(samples)
        if self.fed - self._sent >= self._chunk:
            self._wake.set()

    def finish(self, turn: np.ndarray) -> None:
        """End with the turn's whole audio: what was not fed yet goes with the final call (audio fed past
        the turn's end is dropped, unless a call already took it)."""
        if len(turn) > self.fed:
            self.feed(turn[self.fed:])
        elif len(turn) < self.fed:
            self._audio = [self._joined()[:max(len(turn), self._sent)]]
            self.fed = len(self._audio[0])
        self._ended = True
        self._wake.set()

    async def done(self) -> str:
        """Wait for the last answer (after `finish`); the partial text shown."""
        await asyncio.wait({self._worker})  # never raises the worker's error (it was logged) nor cancels it
        return self._shown

    def cancel(self) -> None:
        self._worker.cancel()

    async def _run(self) -> None:
        while self.failed is None:
            await self._wake.wait()
            self._wake.clear()
            while self.failed is None:
                final = self._ended  # finish() during a call: the next round sends the rest with final
                pending = self.fed - self._sent
                take = pending if final else pending // self._chunk * self._chunk
                if not take and not final:
                    break
                await self._step(self._joined()[self._sent: self._sent + take], final)
                if final:
                    return

    def _joined(self) -> np.ndarray:
        if len(self._audio) > 1:
            self._audio = [np.concatenate(self._audio)]
        return self._audio[0] if self._audio else np.empty(0, np.float32)

    async def _step(self, audio: np.ndarray, final: bool) -> None:
        end = self._sent + len(audio)
        try:
            try:
                step = await self._stages.run("asr", self._call, self.turn, self._seq, audio, final)
            except StreamLost:
                log.info("partials %s: the stream was lost at step %d; replaying %.2f s", self.turn, self._seq,
                         end / RATE)
                self._seq = 0
                step = await self._stages.run("asr", self._call, self.turn, 0, self._joined()[:end], final)
        except MMServeError as exc:
            self.failed = exc
            log.warning("partials %s: stopped for this turn (the final text comes from the offline model): %s",
                        self.turn, exc.message)
            return
        self._sent, self._seq = end, step.chunks
        if len(step.text) > len(self._shown):
            delta, self._shown = step.text[len(self._shown):], step.text
            try:
                await self._emit(delta, end * 1000 // RATE)
            except Exception as exc:  # the client has gone: nobody to send the rest to
                self.failed = MMServeError(f"could not send a partial: {type(exc).__name__}")
