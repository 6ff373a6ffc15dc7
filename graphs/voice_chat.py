"""Voice chat: speech -> ASR -> LLM (streamed) -> TTS per clause, streamed back as events.

Every clause is sent to TTS the moment the LLM completes it, while the LLM keeps generating, so
the first audio leaves long before the reply is finished. Events leave in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator

from pydantic import Field
from ray.serve.handle import DeploymentHandle

from graphs.clauses import ClauseSplitter
from graphs.stages import run_stage, stage_error, stream_stage
from mmserve import metrics
from mmserve.config import Strict
from mmserve.errors import InvalidInput
from mmserve.media import b64encode, encode_wav
from mmserve.protocol.audio import Audio
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.protocol.tts import SpeechRequest

DEFAULT_SYSTEM_PROMPT = "You are a helpful voice assistant. Answer briefly, in the language of the question."


class VoiceChatArgs(Strict):
    asr: str | None = Field(None, description="speech recognition model name (None: the asr default)")
    llm: str | None = Field(None, description="chat model name (None: the llm default)")
    tts: str | None = Field(None, description="speech synthesis model name (None: the tts default)")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0)
    min_clause_chars: int = Field(4, ge=1)
    max_clause_chars: int = Field(80, ge=8, description="unpunctuated text is cut here")


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


class VoiceChatFlow:
    def __init__(self, args: VoiceChatArgs, asr: DeploymentHandle, llm: DeploymentHandle, tts: DeploymentHandle):
        self.args, self.asr, self.llm, self.tts = args, asr, llm, tts

    async def start(self, audio: Audio, *, voice: str | None = None,
                    system_prompt: str | None = None) -> AsyncIterator[dict]:
        """Runs ASR now (so its errors are a plain 4xx), then returns the event stream."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        transcript = await run_stage("asr", self.asr.transcribe, audio.samples, None, timings=timings)
        if not transcript.text.strip():
            raise InvalidInput("no speech was recognized in the audio", field="file", stage="asr")
        messages = [ChatMessage(role="system", content=system_prompt or self.args.system_prompt),
                    ChatMessage(role="user", content=transcript.text)]
        return self._events(start, timings, transcript.text, messages, voice)

    async def _events(self, start: float, timings: dict, text: str, messages: list[ChatMessage],
                      voice: str | None) -> AsyncIterator[dict]:
        yield {"type": "transcript", "text": text, "timings": dict(timings)}
        queue: asyncio.Queue = asyncio.Queue()
        params = GenerationParams(max_new_tokens=self.args.max_new_tokens, temperature=self.args.temperature)
        producer = asyncio.create_task(self._produce(queue, messages, params, voice, start, timings))
        index, reply = 0, []
        try:
            while True:
                kind, *payload = await queue.get()
                if kind == "text":
                    reply.append(payload[0])
                    yield {"type": "text", "delta": payload[0]}
                elif kind == "clause":
                    clause, response = payload
                    event = await self._audio_event(index, clause, response)
                    if event["type"] == "audio" and "first_audio_ms" not in timings:
                        timings["first_audio_ms"] = ms_since(start)
                        metrics.time_to_first("audio").observe(timings["first_audio_ms"], tags={"task": "voice_chat"})
                    index += 1
                    yield event
                elif kind == "error":
                    raise payload[0]
                else:  # end
                    result: ChatResult | None = payload[0]
                    timings["total_ms"] = ms_since(start)
                    yield {"type": "done", "reply": "".join(reply), "timings": timings,
                           "completion_tokens": result.completion_tokens if result else None}
                    return
        finally:  # the client left or the reply ended: stop generating, and synthesizing what is queued
            producer.cancel()
            while not queue.empty():
                kind, *payload = queue.get_nowait()
                if kind == "clause":
                    payload[1].cancel()

    async def _produce(self, queue: asyncio.Queue, messages, params, voice, start, timings) -> None:
        splitter = ClauseSplitter(min_chars=self.args.min_clause_chars, max_chars=self.args.max_clause_chars)
        result = None

        def send(clauses: list[str]) -> None:
            for clause in clauses:  # a task starts synthesis now, while the LLM goes on
                call = run_stage("tts", self.tts.synthesize, SpeechRequest(text=clause, voice=voice))
                queue.put_nowait(("clause", clause, asyncio.ensure_future(call)))

        try:
            async with contextlib.aclosing(stream_stage("llm", self.llm.options(stream=True).stream, messages,
                                                        params)) as items:
                async for item in items:
                    if isinstance(item, ChatResult):
                        result = item
                        continue
                    timings.setdefault("llm_first_token_ms", ms_since(start))
                    queue.put_nowait(("text", item))
                    send(splitter.feed(item))
            timings["llm_done_ms"] = ms_since(start)
            send(splitter.flush())
            queue.put_nowait(("end", result))
        except Exception as exc:
            queue.put_nowait(("error", stage_error("llm", exc)))

    async def _audio_event(self, index: int, clause: str, synthesis: asyncio.Future) -> dict:
        try:
            audio: Audio = await synthesis
        except InvalidInput as exc:
            if exc.field == "input":
                return {"type": "skipped", "index": index, "text": clause, "reason": exc.message}
            raise
        return {"type": "audio", "index": index, "text": clause, "sample_rate": audio.sample_rate,
                "b64_wav": b64encode(encode_wav(audio.samples, audio.sample_rate))}
