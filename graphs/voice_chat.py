"""Voice chat: speech -> ASR -> LLM (streamed) -> TTS per clause (streamed), as events.

Every clause goes to TTS the moment the LLM completes it, while the LLM keeps generating, and its
audio leaves chunk by chunk as ChatTTS decodes it. Time to first audio is therefore ASR + the LLM up
to its first clause + TTS up to that clause's first chunk, not the whole reply. Clauses are spoken
one after another, in order, so audio chunks leave in playback order. `/v1/realtime` runs the same
reply per turn (`VoiceChatFlow.reply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments import metrics
from graphs.clauses import ClauseSplitter
from graphs.stages import Stages, stage_error
from mmserve.config.flows import VoiceChatArgs
from mmserve.errors import InvalidInput
from mmserve.media import b64encode, encode_wav
from mmserve.protocol.audio import Audio
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.protocol.tts import SpeechRequest


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass
class TextDelta:
    text: str


@dataclass
class AudioChunk:
    index: int  # the clause's, from 0
    chunk: int  # within the clause, from 0
    clause: str
    audio: Audio


@dataclass
class Skipped:
    index: int
    clause: str
    reason: str


@dataclass
class ReplyDone:
    reply: str
    completion_tokens: int | None
    prompt_tokens: int | None = None


ReplyItem = TextDelta | AudioChunk | Skipped | ReplyDone


class VoiceChatFlow:
    def __init__(self, args: VoiceChatArgs, asr: DeploymentHandle, llm: DeploymentHandle, tts: DeploymentHandle, *,
                 stages: Stages | None = None):
        self.args, self.asr, self.llm, self.tts = args, asr, llm, tts
        self.stages = stages or Stages()  # the gateway's: deadlines and saturation marks

    def messages(self, user_text: str, system_prompt: str | None = None) -> list[ChatMessage]:
        return [ChatMessage(role="system", content=system_prompt or self.args.system_prompt),
                ChatMessage(role="user", content=user_text)]

    async def start(self, audio: Audio, *, voice: str | None = None, system_prompt: str | None = None,
                    chunked: bool = True) -> AsyncIterator[dict]:
        """Runs ASR now (so its errors are a plain 4xx), then returns the event stream: one audio
        event per decoded chunk, or with `chunked=False` one per clause."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        transcript = await self.stages.run("asr", self.asr.transcribe, audio.samples, None, timings=timings)
        if not transcript.text.strip():
            raise InvalidInput("no speech was recognized in the audio", field="file", stage="asr")
        return self._events(start, timings, transcript.text, self.messages(transcript.text, system_prompt), voice,
                            chunked)

    async def _events(self, start: float, timings: dict, text: str, messages: list[ChatMessage],
                      voice: str | None, chunked: bool) -> AsyncIterator[dict]:
        """The HTTP route's events; each audio event is a small WAV that plays on its own."""
        yield {"type": "transcript", "text": text, "timings": dict(timings)}
        held: list[AudioChunk] = []  # chunks of the clause being spoken, when whole clauses are wanted

        def audio_event(chunks: list[AudioChunk]) -> dict:
            first, rate = chunks[0], chunks[0].audio.sample_rate
            samples = np.concatenate([c.audio.samples for c in chunks])
            event = {"type": "audio", "index": first.index, "text": first.clause, "sample_rate": rate,
                     "b64_wav": b64encode(encode_wav(samples, rate))}
            return {**event, "chunk": first.chunk} if chunked else event

        async with contextlib.aclosing(self.reply(messages, voice=voice, start=start, timings=timings)) as items:
            async for item in items:
                if held and (isinstance(item, (Skipped, ReplyDone)) or
                             isinstance(item, AudioChunk) and item.index != held[0].index):
                    yield audio_event(held)
                    held = []
                if isinstance(item, TextDelta):
                    yield {"type": "text", "delta": item.text}
                elif isinstance(item, AudioChunk):
                    if chunked:
                        yield audio_event([item])
                    else:
                        held.append(item)
                elif isinstance(item, Skipped):
                    yield {"type": "skipped", "index": item.index, "text": item.clause, "reason": item.reason}
                else:
                    timings["total_ms"] = ms_since(start)
                    yield {"type": "done", "reply": item.reply, "timings": timings,
                           "completion_tokens": item.completion_tokens}

    async def reply(self, messages: list[ChatMessage], *, voice: str | None, start: float | None = None,
                    timings: dict | None = None, max_new_tokens: int | None = None,
                    speak: bool = True) -> AsyncIterator[ReplyItem]:
        """The LLM's reply as text deltas and (with `speak`) its audio chunks in playback order, then
        ReplyDone. `timings` gets llm_first_token_ms, llm_done_ms and first_audio_ms (from `start`).
        Closing this early (client gone, barge-in) stops the LLM and the TTS under way."""
        start = time.perf_counter() if start is None else start
        timings = {} if timings is None else timings
        out: asyncio.Queue = asyncio.Queue()
        clauses: asyncio.Queue = asyncio.Queue()
        params = GenerationParams(max_new_tokens=max_new_tokens or self.args.max_new_tokens,
                                  temperature=self.args.temperature)
        workers = [asyncio.create_task(self._generate(messages, params, out, clauses if speak else None,
                                                      start, timings))]
        if speak:
            workers.append(asyncio.create_task(self._speak(clauses, out, voice, start, timings)))
        pending = len(workers)
        reply, result = [], None
        try:
            while pending:
                item = await out.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # a worker finished
                    pending -= 1
                elif isinstance(item, ChatResult):
                    result = item
                else:
                    if isinstance(item, TextDelta):
                        reply.append(item.text)
                    yield item
            yield ReplyDone("".join(reply), *((result.completion_tokens, result.prompt_tokens) if result else (None, None)))
        finally:  # the client left, or the reply ended: stop generating and speaking
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _generate(self, messages, params, out: asyncio.Queue, clauses: asyncio.Queue | None,
                        start: float, timings: dict) -> None:
        splitter = ClauseSplitter(min_chars=self.args.min_clause_chars, max_chars=self.args.max_clause_chars,
                                  first_max_chars=self.args.first_clause_max_chars)
        try:
            async with contextlib.aclosing(self.stages.stream("llm", self.llm.options(stream=True).stream, messages,
                                                        params)) as items:
                async for item in items:
                    if isinstance(item, ChatResult):
                        out.put_nowait(item)
                        continue
                    timings.setdefault("llm_first_token_ms", ms_since(start))
                    out.put_nowait(TextDelta(item))
                    if clauses is not None:
                        for clause in splitter.feed(item):
                            clauses.put_nowait(clause)
            timings["llm_done_ms"] = ms_since(start)
            if clauses is not None:
                for clause in splitter.flush():
                    clauses.put_nowait(clause)
        except Exception as exc:
            out.put_nowait(stage_error("llm", exc))
        finally:
            if clauses is not None:
                clauses.put_nowait(None)
            out.put_nowait(None)

    async def _speak(self, clauses: asyncio.Queue, out: asyncio.Queue, voice: str | None, start: float,
                     timings: dict) -> None:
        """One clause at a time, each streamed chunk by chunk: the first clause's first chunk is not
        slowed by synthesis of the clauses behind it, and chunks leave in playback order."""
        index = 0
        try:
            while (clause := await clauses.get()) is not None:
                request = SpeechRequest(text=clause, voice=voice)
                try:
                    async with contextlib.aclosing(self.stages.stream("tts", self.tts.options(stream=True).stream,
                                                                request)) as chunks:
                        chunk_index = 0
                        async for audio in chunks:
                            if "first_audio_ms" not in timings:
                                timings["first_audio_ms"] = ms_since(start)
                                metrics.time_to_first("audio").observe(timings["first_audio_ms"],
                                                                       tags={"task": "voice_chat"})
                            out.put_nowait(AudioChunk(index, chunk_index, clause, audio))
                            chunk_index += 1
                except InvalidInput as exc:
                    if exc.field != "input":
                        raise
                    out.put_nowait(Skipped(index, clause, exc.message))
                index += 1
        except Exception as exc:
            out.put_nowait(stage_error("tts", exc))
        finally:
            out.put_nowait(None)
