"""/v1/realtime: live voice over WebSocket, a compatible subset of OpenAI's Realtime API.

`openai.AsyncOpenAI(base_url="http://host:8000/v1").realtime.connect(model=<chat model>)` talks to
it. A conversation (`type: realtime`, the default): each turn the VAD finds is transcribed and
answered by the voice-chat flow's LLM and TTS, audio streamed back chunk by chunk; speech during a
reply cancels it. A transcription session (`?intent=transcription`, or `session.update` with
`session.type: transcription`, as the OpenAI Agents SDK and Pipecat open it) only transcribes.
Limits per gateway replica: concurrent sessions, session length, buffered audio and an idle timeout.
"""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import asyncio
import json
import time

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments import metrics
from gateway.auth import Unauthorized, authorized
from gateway.realtime.events import error_event, parse_client_event, server_event
from gateway.realtime.session import PartialsModel, RealtimeSession, SessionLimits, log
from gateway.realtime.vad import silero_model
from gateway.services import services
from mmserve.config.gateway import RealtimeArgs
from mmserve.errors import InvalidInput, MMServeError

router = APIRouter()
KEY_SUBPROTOCOL = "openai-insecure-api-key."  # browsers cannot set headers; OpenAI reads the key from here
_open_sessions = 0


class SessionRefused(MMServeError):
    status_code = 503
    code = "session_limit"


class SessionExpired(MMServeError):
    status_code = 408
    code = "session_expired"


class IdleTimeout(MMServeError):
    status_code = 408
    code = "idle_timeout"


def presented_key(websocket: WebSocket) -> str | None:
    """The API key from `Authorization: Bearer` or, for browsers, the `openai-insecure-api-key.` subprotocol."""
    header = websocket.headers.get("authorization")
    if header:
        return header
    for protocol in websocket.scope.get("subprotocols", []):
        if protocol.startswith(KEY_SUBPROTOCOL):
            return "Bearer " + protocol.removeprefix(KEY_SUBPROTOCOL)
    return None


async def refuse(websocket: WebSocket, exc: MMServeError, code: int) -> None:
    """Errors before a session exists still reach the client as an OpenAI `error` event, then the close."""
    await websocket.send_json(error_event(exc))
    await websocket.close(code=code, reason=exc.code)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, model: str | None = None, asr_model: str | None = None,
                   tts_model: str | None = None):
    global _open_sessions
    svc = services()
    args: RealtimeArgs = svc.realtime
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    if svc.api_keys and not authorized(presented_key(websocket), svc.api_keys):
        return await refuse(websocket, Unauthorized(
        "missing or invalid API key (Authorization: Bearer <key>, or the openai-insecure-api-key. subprotocol)"), 1008)
    if _open_sessions >= args.max_sessions:
        metrics.rejected_requests().inc(tags={"reason": "overloaded"})
        return await refuse(websocket, SessionRefused(
            f"this gateway replica already holds {args.max_sessions} realtime sessions; retry later"), 1013)
    kind = "transcription" if websocket.query_params.get("intent") == "transcription" else "realtime"
    try:
        flow = svc.flow("voice-chat", llm=model, asr=asr_model, tts=tts_model)
    except MMServeError as exc:
        if kind == "realtime":
            return await refuse(websocket, exc, 1008)
        flow = None  # a transcription session needs only an ASR model

    def pick_asr(name: str | None):
        return svc.model("asr", name or asr_model, field_name="session.audio.input.transcription.model").handle

    try:
        pick_asr(None)
    except MMServeError as exc:
        return await refuse(websocket, exc, 1008)
    _open_sessions += 1
    metrics.realtime_sessions().set(_open_sessions)
    lock = asyncio.Lock()

    async def send(event: dict) -> None:
        async with lock:
            await websocket.send_text(json.dumps(event, ensure_ascii=False))

    limits = SessionLimits(args.max_buffered_audio_s, args.vad_chunk_ms, args.vad_listen_chunk_ms,
                           args.max_history_messages)
    partials = None
    if args.partials_model is not None:
        streaming = svc.model("asr", args.partials_model)
        partials = PartialsModel(streaming.handle, streaming.stream_chunk_samples)
    session = RealtimeSession(send, limits, stages=svc.stages, flow=flow, pick_asr=pick_asr, model=model, kind=kind,
                              vad=silero_model() if args.turn_detector == "silero" else None, partials=partials)
    opened = time.monotonic()
    try:
        await send(server_event("session.created", session=session.session_object()))
        await serve_session(websocket, session, args)
    except WebSocketDisconnect:
        pass
    finally:
        log.info(json.dumps({"session": session.id, "model": model, "duration_s": round(time.monotonic() - opened, 1),
                             "turns": session.turns, "responses": session.responses}))
        _open_sessions -= 1
        metrics.realtime_sessions().set(_open_sessions)
        await session.close()
        if websocket.application_state != WebSocketState.DISCONNECTED:
            try:
                await websocket.close()
            except Exception:  # already closed by the client
                pass


async def serve_session(websocket: WebSocket, session: RealtimeSession, args: RealtimeArgs) -> None:
    ends = time.monotonic() + args.max_session_s
    while True:
        idle_ends = time.monotonic() + args.idle_timeout_s
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=max(0.0, min(ends, idle_ends)
                                                                                - time.monotonic()))
        except TimeoutError:
            # Which deadline was waited for, not the clock: uvloop (Serve's loop) fires timers up to
            # 1 ms early, so at the session's end `monotonic() < ends` and it looked like idleness.
            if ends <= idle_ends:
                await session.send(error_event(SessionExpired(
                    f"the session reached its maximum length of {args.max_session_s:g} s")))
                await websocket.close(code=1000, reason="session_expired")
                return
            if session.busy:
                continue
            await session.send(error_event(IdleTimeout(
                f"no client event for {args.idle_timeout_s:g} s")))
            await websocket.close(code=1000, reason="idle_timeout")
            return
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") if message.get("text") is not None else (message.get("bytes") or b"").decode(
            "utf-8", "replace")
        try:
            event = parse_client_event(json.loads(raw))
        except json.JSONDecodeError:
            await session.send(error_event(InvalidInput("a client event must be JSON", field="type")))
            continue
        except InvalidInput as exc:
            await session.send(error_event(exc))
            continue
        await session.handle(event)
