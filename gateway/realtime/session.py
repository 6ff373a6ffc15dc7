"""One realtime session: audio in, turns found by a VAD, transcribed, and (conversations) answered aloud.

Turns are found by Silero VAD in this process (`gateway/realtime/vad.py`, the default: no Serve call
while listening) or by the ASR model's streaming FSMN-VAD (`turn_detector: asr`: a VAD worker sends
appended audio to the ASR deployment's `detect_speech`, chunks that queued up while a call was out
going together; the VAD state travels with each call as opaque bytes, so any ASR replica can take
the next chunk). A conversation (`type: realtime`) runs at most one response at a time (the
voice-chat reply: LLM -> clauses -> streamed TTS), and speech that starts during it cancels it
(barge-in). A transcription session (`type: transcription`) only transcribes its turns.

With a streaming ASR model configured (`partials_model`), the turn under way also streams to it and
its partial text goes out as `...input_audio_transcription.delta` while the user speaks
(`gateway/realtime/partials.py`); the turn's final text comes from the session's ASR model (two-pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from deployments import metrics
from gateway.realtime.audio import Resampler, decode_pcm16, encode_pcm16
from gateway.realtime.events import (
    INPUT_RATES,
    OUTPUT_RATE,
    ClientEvent,
    ResponseOptions,
    SessionUpdate,
    Transcription,
    TurnDetection,
    error_event,
    new_id,
    server_event,
)
from gateway.realtime.partials import LivePartials
from gateway.realtime.vad import SileroModel, TurnDetector
from graphs.stages import Stages
from graphs.voice_chat import AudioChunk, ReplyDone, Skipped, TextDelta, VoiceChatFlow
from mmserve.errors import InvalidInput, MMServeError, PayloadTooLarge
from mmserve.protocol.asr import MIN_AUDIO_S, prompt_hotwords
from mmserve.protocol.llm import ChatMessage

# A child of Serve's "ray.serve" logger, so the lines land in the gateway replica's log file.
log = logging.getLogger("ray.serve.mmserve.realtime")

ASR_RATE = 16000
IDLE_BUFFER_S = 1.0  # without speech, the buffer keeps this much (the start of a turn VAD finds late)
MIN_COMMIT_MS = round(MIN_AUDIO_S * 1000)  # OpenAI refuses to commit less


class Conflict(MMServeError):
    status_code = 409
    code = "conversation_already_has_active_response"


class CommitEmpty(InvalidInput):
    code = "input_audio_buffer_commit_empty"  # OpenAI's code: clients ignore it after a VAD commit


class NoConversation(InvalidInput):
    code = "session_type_mismatch"


@dataclass
class SessionLimits:
    max_buffered_audio_s: float
    vad_chunk_ms: int  # while speech is under way
    vad_listen_chunk_ms: int  # while waiting for it
    max_history_messages: int


@dataclass
class Response:
    id: str
    item_id: str
    modality: str
    task: asyncio.Task | None = None
    cancel_reason: str | None = None
    text: list[str] = field(default_factory=list)
    usage: ReplyDone | None = None


@dataclass
class PartialsModel:
    handle: object  # the streaming ASR model's deployment handle
    chunk_samples: int  # its stride at 16 kHz


class RealtimeSession:
    """`flow` answers turns (None: only transcription sessions are possible); `pick_asr` resolves a
    transcription model name to its handle (None: the default); `vad` None: the ASR model's VAD;
    `partials` None: no partial transcripts."""

    def __init__(self, send: Callable[[dict], Awaitable[None]], limits: SessionLimits, *, stages: Stages,
                 flow: VoiceChatFlow | None, pick_asr: Callable[[str | None], object], model: str | None,
                 kind: str = "realtime", vad: SileroModel | None = None, partials: PartialsModel | None = None):
        self.flow, self._send, self.limits, self.model, self.stages = flow, send, limits, model, stages
        self.kind = kind
        self._pick_asr = pick_asr
        self.asr = flow.asr if flow is not None and kind == "realtime" else pick_asr(None)
        self.transcription = Transcription()
        self._silero = vad
        self._partials = partials
        self._live: LivePartials | None = None  # the partials of the turn under way
        self.id = new_id("sess")
        self.instructions = flow.args.system_prompt if flow is not None else ""
        self.voice: str | None = None
        self.modality = "audio"
        self.max_output_tokens: int | None = None
        self.turn_detection: TurnDetection | None = TurnDetection()
        self.input_rate = 24000
        self._to_asr_rate = Resampler(self.input_rate, ASR_RATE)
        self.history: list[ChatMessage] = []
        self.last_item_id: str | None = None
        # 16 kHz audio since the last commit; `_buffer_start` is its first sample's index in the session
        self._buffer: list[np.ndarray] = []
        self._buffer_start = 0
        self._received = 0  # 16 kHz samples received in the session
        self._speech: tuple[str, int] | None = None  # (item id, start sample) while the user speaks
        self._vad_state: bytes | None = None
        self._vad_origin = 0  # the session sample where the VAD's stream (its ms) starts
        self._vad_heard = 0  # the session sample up to which the VAD has judged the audio
        self._vad_queue: asyncio.Queue = asyncio.Queue()
        self._vad_pending: list[np.ndarray] = []
        self._detector: TurnDetector | None = None
        self._turns = asyncio.Lock()  # turns are transcribed, and answered, in the order they were spoken
        self._tasks: set[asyncio.Task] = set()
        self.response: Response | None = None
        self.turns = self.responses = 0  # committed turns and responses started, for the session's log line
        self._restart_vad()
        if vad is None:
            self._vad_worker = self._spawn(self._detect_turns())

    # -- plumbing -------------------------------------------------------------------------------------

    async def send(self, event: dict) -> None:
        await self._send(event)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self._drop_live()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def busy(self) -> bool:
        """A response or a turn is under way (the idle timeout does not apply then)."""
        return self.response is not None or self._turns.locked()

    def session_object(self) -> dict:
        detection = None if self.turn_detection is None else self.turn_detection.shown()
        input_format = {"type": "audio/pcm", "rate": self.input_rate}
        if self.kind == "transcription":
            return {"type": "transcription", "object": "realtime.transcription_session", "id": self.id,
                    "audio": {"input": {"format": input_format, "turn_detection": detection,
                                        "transcription": self.transcription.model_dump(),
                                        "noise_reduction": None}}}
        return {"type": "realtime", "object": "realtime.session", "id": self.id, "model": self.model,
                "instructions": self.instructions, "output_modalities": [self.modality],
                "max_output_tokens": self.max_output_tokens or "inf",
                "audio": {"input": {"format": input_format, "turn_detection": detection,
                                    "transcription": self.transcription.model_dump()},
                          "output": {"format": {"type": "audio/pcm", "rate": OUTPUT_RATE}, "voice": self.voice}}}

    # -- client events --------------------------------------------------------------------------------

    async def handle(self, event: ClientEvent) -> None:
        try:
            match event.type:
                case "session.update":
                    self._update(event.session)
                    await self.send(server_event("session.updated", session=self.session_object()))
                case "input_audio_buffer.append":
                    await self._append(decode_pcm16(event.audio))
                case "input_audio_buffer.commit":
                    await self._commit(manual=True)
                case "input_audio_buffer.clear":
                    self._clear_buffer()
                    await self.send(server_event("input_audio_buffer.cleared"))
                case "conversation.item.create":
                    self._conversation_only("conversation.item.create")
                    await self._add_item(event)
                case "response.create":
                    self._conversation_only("response.create")
                    self.respond(event.response or ResponseOptions())
                case "response.cancel":
                    await self.cancel_response("client_cancelled")
        except MMServeError as exc:
            await self.send(error_event(exc, event.event_id))

    def _conversation_only(self, what: str) -> None:
        if self.kind != "realtime":
            raise NoConversation(f"{what} needs a conversation (session.type realtime); this is a transcription "
                                 "session", field="type")

    def _update(self, update: SessionUpdate) -> None:
        if update.type is not None and update.type != self.kind:
            if update.type == "realtime" and self.flow is None:
                raise NoConversation("this server has no voice-chat flow (an LLM and a TTS model) for realtime "
                                     "conversations; use session.type transcription", field="session.type")
            self.kind = update.type
            if self.transcription.model is None:
                self.asr = self.flow.asr if self.kind == "realtime" else self._pick_asr(None)
        audio = update.audio
        rate = audio.input.format.rate if audio and audio.input and audio.input.format else self.input_rate
        if rate not in INPUT_RATES:
            raise InvalidInput(f"input audio rate {rate} is not supported; use one of {INPUT_RATES}",
                               field="session.audio.input.format.rate")
        out = audio.output.format.rate if audio and audio.output and audio.output.format else OUTPUT_RATE
        if out != OUTPUT_RATE:
            raise InvalidInput(f"output audio is PCM16 at {OUTPUT_RATE} Hz", field="session.audio.output.format.rate")
        if update.instructions is not None:
            self.instructions = update.instructions
        if update.output_modalities:
            self.modality = update.output_modalities[0]
        if update.max_output_tokens is not None:
            self.max_output_tokens = None if update.max_output_tokens == "inf" else update.max_output_tokens
        if audio and audio.output and audio.output.voice is not None:
            self.voice = audio.output.voice
        if audio and audio.input:
            if audio.input.transcription is not None:
                self.asr = self._pick_asr(audio.input.transcription.model)
                self.transcription = audio.input.transcription
            if "turn_detection" in audio.input.model_fields_set:
                was = self.turn_detection
                self.turn_detection = audio.input.turn_detection
                if self.turn_detection is None:
                    self._speech = None
                elif was is None or self._silero is not None:
                    self._restart_vad()  # audio sent while it was off never reached the VAD; Silero takes new settings
            if rate != self.input_rate:
                self.input_rate, self._to_asr_rate = rate, Resampler(rate, ASR_RATE)

    # -- audio in, turns ------------------------------------------------------------------------------

    async def _append(self, samples: np.ndarray) -> None:
        buffered_s = sum(len(b) for b in self._buffer) / ASR_RATE
        if buffered_s + len(samples) / self.input_rate > self.limits.max_buffered_audio_s:
            raise PayloadTooLarge(f"the input audio buffer holds at most {self.limits.max_buffered_audio_s:g} s; "
                                  "commit or clear it", field="audio")
        chunk = self._to_asr_rate(samples)
        if not len(chunk):
            return
        self._buffer.append(chunk)
        self._received += len(chunk)
        if self.turn_detection is None:
            return
        if self._detector is None:
            self._vad_queue.put_nowait(chunk)
            self._feed_live(self._received)  # FSMN says nothing of pauses: partials may run into the silence
            return
        for kind, sample in self._detector.feed(chunk):
            at = self._vad_origin + sample
            await (self._speech_started(at) if kind == "start" else self._speech_stopped(at))
        self._feed_live(self._vad_origin + self._detector.settled)
        if self._speech is None:  # keep what a start's prefix padding may reach back to
            keep_s = max(IDLE_BUFFER_S, self.turn_detection.prefix_padding_ms / 1000)
            self._trim_buffer(self._received - int(keep_s * ASR_RATE))

    def _trim_buffer(self, keep_from: int) -> None:
        """Drop buffered audio before session sample `keep_from`."""
        if keep_from <= self._buffer_start:
            return
        joined = np.concatenate(self._buffer) if self._buffer else np.empty(0, np.float32)
        cut = min(keep_from - self._buffer_start, len(joined))
        self._buffer = [joined[cut:]] if cut < len(joined) else []
        self._buffer_start += cut

    def _peek_buffer(self, start: int, end: int) -> np.ndarray:
        """The buffered audio from session sample `start` to `end`, left in the buffer; read from the
        newest chunk back, so a long turn's whole buffer is not joined at every append."""
        pieces, top = [], self._received  # the buffer always ends at the last sample received
        for chunk in reversed(self._buffer):
            low = top - len(chunk)
            if low < end and top > start:
                pieces.append(chunk[max(start - low, 0): min(end - low, len(chunk))])
            if low <= start:
                break
            top = low
        return np.concatenate(pieces[::-1]) if pieces else np.empty(0, np.float32)

    def _take_buffer(self, start: int | None = None, end: int | None = None) -> np.ndarray:
        """The buffered audio from session sample `start` to `end` (default: all of it); the buffer then
        keeps only what comes after `end`."""
        joined = np.concatenate(self._buffer) if self._buffer else np.empty(0, np.float32)
        lo = 0 if start is None else max(0, start - self._buffer_start)
        hi = len(joined) if end is None else max(lo, min(len(joined), end - self._buffer_start))
        taken, rest = joined[lo:hi], joined[hi:]
        self._buffer, self._buffer_start = ([rest] if len(rest) else []), self._buffer_start + hi
        return taken

    def _clear_buffer(self) -> None:
        self._buffer, self._buffer_start = [], self._received
        self._speech = None
        self._drop_live()

    def _drop_live(self) -> None:
        if self._live is not None:
            self._live.cancel()
            self._live = None

    def _restart_vad(self) -> None:
        self._vad_state, self._vad_origin, self._vad_heard, self._vad_pending = None, self._received, self._received, []
        while not self._vad_queue.empty():
            self._vad_queue.get_nowait()
        if self._silero is not None and self.turn_detection is not None:
            detection = self.turn_detection
            self._detector = TurnDetector(self._silero, detection.threshold, detection.prefix_padding_ms,
                                          detection.silence_duration_ms)

    def _sample_at(self, vad_ms: int) -> int:
        return self._vad_origin + vad_ms * ASR_RATE // 1000

    async def _detect_turns(self) -> None:
        """The VAD worker: feeds appended audio to the ASR model's streaming VAD, in order: in small
        chunks during speech, so its end is heard soon; in larger ones while listening, which is
        most of a session, so idle sessions cost the ASR model fewer calls."""
        while True:
            chunks = [await self._vad_queue.get()]
            while not self._vad_queue.empty():
                chunks.append(self._vad_queue.get_nowait())
            self._vad_pending.extend(chunks)
            min_samples = ASR_RATE * (self.limits.vad_listen_chunk_ms if self._speech is None
                                      else self.limits.vad_chunk_ms) // 1000
            if sum(len(c) for c in self._vad_pending) < min_samples or self.turn_detection is None:
                continue
            samples, self._vad_pending = np.concatenate(self._vad_pending), []
            origin = self._vad_origin
            try:
                step = await self.stages.run("asr", self.asr.detect_speech, self._vad_state, samples,
                                             self.turn_detection.silence_duration_ms)
            except MMServeError as exc:
                if exc.field == "turn_detection":  # this ASR model has no streaming VAD: say so once, stop
                    self.turn_detection = None
                    exc.field = "session.audio.input.turn_detection"
                await self.send(error_event(exc))
                continue
            if origin != self._vad_origin:  # restarted while the call was out: its answer is stale
                continue
            self._vad_state = step.state
            for kind, ms in step.events:
                at = self._sample_at(ms)
                await (self._speech_started(at) if kind == "start" else self._speech_stopped(at))
            self._vad_heard += len(samples)
            if self._speech is None:  # only audio the VAD has judged silence goes: a client may send faster
                self._trim_buffer(self._vad_heard - int(IDLE_BUFFER_S * ASR_RATE))  # than real time

    async def _speech_started(self, sample: int) -> None:
        if self._speech is not None or self.turn_detection is None:
            return
        item_id = new_id("item")
        self._speech = (item_id, sample)
        self._trim_buffer(self._speech[1])
        self._start_live(item_id, sample)
        await self.send(server_event("input_audio_buffer.speech_started", item_id=item_id,
                                     audio_start_ms=self._speech[1] * 1000 // ASR_RATE))
        if self.turn_detection.interrupt_response and self.response is not None:
            await self.cancel_response("turn_detected")

    async def _speech_stopped(self, end: int) -> None:
        if self._speech is None:
            return
        item_id, start = self._speech
        self._speech = None
        await self.send(server_event("input_audio_buffer.speech_stopped", audio_end_ms=end * 1000 // ASR_RATE,
                                     item_id=item_id))
        audio = self._take_buffer(start, end)
        live, self._live = self._live, None
        if live is not None:
            live.finish(audio)
        await self._commit_turn(item_id, audio, respond=self.kind == "realtime" and self.turn_detection is not None
                                and self.turn_detection.create_response, live=live)

    def _start_live(self, item_id: str, start: int) -> None:
        """Partials for the turn starting at session sample `start`, fed what is buffered from there."""
        self._drop_live()
        if self._partials is None:
            return
        start_ms = start * 1000 // ASR_RATE

        async def emit(delta: str, end_ms: int) -> None:
            await self.send(server_event("conversation.item.input_audio_transcription.delta", item_id=item_id,
                                         content_index=0, delta=delta, audio_end_ms=start_ms + end_ms))

        self._live = LivePartials(self._partials.handle, self.stages, session=self.id, turn=item_id,
                                  chunk_samples=self._partials.chunk_samples, emit=emit)

    def _feed_live(self, upto: int) -> None:
        """Feed the turn's partials its buffered audio up to session sample `upto`."""
        if self._live is None or self._speech is None:
            return
        fed_to = self._speech[1] + self._live.fed
        if upto > fed_to:
            self._live.feed(self._peek_buffer(fed_to, upto))

    async def _commit(self, manual: bool) -> None:
        audio = self._take_buffer()
        if len(audio) * 1000 < MIN_COMMIT_MS * ASR_RATE:
            raise CommitEmpty(f"the input audio buffer holds {len(audio) * 1000 // ASR_RATE} ms; at least "
                               f"{MIN_COMMIT_MS} ms is needed to commit", field="audio")
        item_id = self._speech[0] if self._speech else new_id("item")
        self._speech = None
        self._drop_live()  # a manual commit takes the whole buffer, not the turn the partials followed
        await self._commit_turn(item_id, audio, respond=False)

    async def _commit_turn(self, item_id: str, audio: np.ndarray, respond: bool,
                           live: LivePartials | None = None) -> None:
        self.turns += 1
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send(server_event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id))
        await self.send(server_event("conversation.item.added", previous_item_id=previous,
                                     item=user_item(item_id, None, "in_progress")))
        turn_ended = time.perf_counter()
        self._spawn(self._transcribe(item_id, audio, respond, turn_ended, live))

    async def _transcribe(self, item_id: str, audio: np.ndarray, respond: bool, turn_ended: float,
                          live: LivePartials | None) -> None:
        async with self._turns:
            try:
                transcript = await self.stages.run("asr", self.asr.transcribe, audio,
                                                   prompt_hotwords(self.transcription.prompt))
                if live is not None:  # the streaming pass's last delta goes before the final text
                    await live.done()
            except MMServeError as exc:
                if live is not None:  # no more deltas for an item whose transcription failed
                    live.cancel()
                await self.send(server_event("conversation.item.input_audio_transcription.failed", item_id=item_id,
                                             content_index=0, error=exc.to_dict()["error"]))
                return
            text = transcript.text.strip()
            await self.send(server_event("conversation.item.input_audio_transcription.completed", item_id=item_id,
                                         content_index=0, transcript=text,
                                         usage={"type": "duration", "seconds": round(len(audio) / ASR_RATE, 3)}))
            await self.send(server_event("conversation.item.done", item=user_item(item_id, text, "completed")))
            if text:
                self._remember(ChatMessage(role="user", content=text))
            if respond and text and self.response is None and self._speech is None:  # not if they speak on
                self.respond(ResponseOptions(), turn_ended=turn_ended)

    async def _add_item(self, event: ClientEvent) -> None:
        item = event.item
        text = "".join(part.text for part in item.content)
        item_id = new_id("item")
        previous, self.last_item_id = self.last_item_id, item_id
        self._remember(ChatMessage(role=item.role, content=text))
        shown = {"id": item_id, "object": "realtime.item", "type": "message", "role": item.role,
                 "status": "completed", "content": [c.model_dump() for c in item.content]}
        await self.send(server_event("conversation.item.added", previous_item_id=previous, item=shown))
        await self.send(server_event("conversation.item.done", previous_item_id=previous, item=shown))

    def _remember(self, message: ChatMessage) -> None:
        self.history.append(message)
        del self.history[:-self.limits.max_history_messages]

    # -- responses ------------------------------------------------------------------------------------

    def respond(self, options: ResponseOptions, turn_ended: float | None = None) -> None:
        if self.response is not None:
            raise Conflict(f"response {self.response.id} is still in progress; cancel it or wait for response.done",
                           field="type")
        modality = options.output_modalities[0] if options.output_modalities else self.modality
        self.response = Response(new_id("resp"), new_id("item"), modality)
        self.responses += 1
        self.response.task = self._spawn(self._run_response(self.response, options, turn_ended))

    async def cancel_response(self, reason: str) -> None:
        response = self.response
        if response is None or response.task is None:
            return
        response.cancel_reason = reason
        response.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await response.task

    async def _run_response(self, response: Response, options: ResponseOptions, turn_ended: float | None) -> None:
        instructions = options.instructions or self.instructions
        messages = [ChatMessage(role="system", content=instructions), *self.history]
        limit = options.max_output_tokens if options.max_output_tokens is not None else self.max_output_tokens
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0, "content_index": 0}
        audio_out = response.modality == "audio"
        part = {"type": "audio", "transcript": ""} if audio_out else {"type": "text", "text": ""}
        status, details = "completed", None
        await self.send(server_event("response.created", response=self._response_object(response, "in_progress")))
        await self.send(server_event("response.output_item.added", response_id=response.id, output_index=0,
                                     item=self._assistant_item(response, "in_progress")))
        await self.send(server_event("response.content_part.added", part=part, **ids))
        to_output_rate: Resampler | None = None
        try:
            reply = self.flow.reply(messages, voice=self.voice, speak=audio_out,
                                    max_new_tokens=None if limit in (None, "inf") else limit)
            async with contextlib.aclosing(reply) as items:
                async for item in items:
                    if isinstance(item, TextDelta):
                        response.text.append(item.text)
                        kind = "response.output_audio_transcript.delta" if audio_out else "response.output_text.delta"
                        await self.send(server_event(kind, delta=item.text, **ids))
                    elif isinstance(item, AudioChunk):
                        if to_output_rate is None:
                            to_output_rate = Resampler(item.audio.sample_rate, OUTPUT_RATE)
                        if turn_ended is not None:
                            metrics.time_to_first("audio").observe((time.perf_counter() - turn_ended) * 1000,
                                                                   tags={"task": "realtime"})
                            turn_ended = None
                        await self.send(server_event("response.output_audio.delta",
                                                     delta=encode_pcm16(to_output_rate(item.audio.samples)), **ids))
                    elif isinstance(item, Skipped):
                        log.info("realtime %s: clause not speakable (%s): %r", self.id, item.reason, item.clause)
                    elif isinstance(item, ReplyDone):
                        response.usage = item
        except asyncio.CancelledError:
            status, details = "cancelled", {"type": "cancelled", "reason": response.cancel_reason or "client_cancelled"}
        except MMServeError as exc:
            status, details = "failed", {"type": "failed", "error": {"type": exc.code, "code": exc.code,
                                                                     "message": exc.message}}
            await self.send(error_event(exc))
        except Exception as exc:  # never let one response take the session down silently
            log.exception("realtime %s: response %s failed", self.id, response.id)
            status, details = "failed", {"type": "failed", "error": {"type": "server_error", "code": "server_error",
                                                                     "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            self.response = None
        text = "".join(response.text)
        if text:
            self._remember(ChatMessage(role="assistant", content=text))
        done_part = {"type": "audio", "transcript": text} if audio_out else {"type": "text", "text": text}
        with contextlib.suppress(Exception):  # the client may have gone; then there is no one to tell
            if status == "completed":
                if audio_out:
                    await self.send(server_event("response.output_audio.done", **ids))
                    await self.send(server_event("response.output_audio_transcript.done", transcript=text, **ids))
                else:
                    await self.send(server_event("response.output_text.done", text=text, **ids))
                await self.send(server_event("response.content_part.done", part=done_part, **ids))
            item_status = "completed" if status == "completed" else "incomplete"
            await self.send(server_event("response.output_item.done", response_id=response.id, output_index=0,
                                         item=self._assistant_item(response, item_status, done_part)))
            await self.send(server_event("response.done", response=self._response_object(
                response, status, details, [self._assistant_item(response, item_status, done_part)])))

    def _response_object(self, response: Response, status: str, details: dict | None = None,
                         output: list | None = None) -> dict:
        usage = response.usage
        tokens = None if usage is None or usage.prompt_tokens is None else {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + (usage.completion_tokens or 0)}
        return {"id": response.id, "object": "realtime.response", "status": status, "status_details": details,
                "output": output or [], "output_modalities": [response.modality], "usage": tokens,
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": OUTPUT_RATE}, "voice": self.voice}}}

    def _assistant_item(self, response: Response, status: str, part: dict | None = None) -> dict:
        content = []
        if part is not None:
            content = [{"type": "output_audio", "transcript": part["transcript"]} if part["type"] == "audio"
                       else {"type": "output_text", "text": part["text"]}]
        return {"id": response.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": status, "content": content}


def user_item(item_id: str, transcript: str | None, status: str) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": status,
            "content": [{"type": "input_audio", "transcript": transcript}]}

