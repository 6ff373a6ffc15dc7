"""The Realtime API's events, as OpenAI names and shapes them (openai 3.57, `openai.types.realtime`).

Client events are validated here, so a bad one is an `error` event naming its field instead of a
dropped connection; unknown fields are ignored, as clients send more than this subset reads.
Server events are plain dicts, so the gateway needs no `openai` package.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmserve.errors import InvalidInput, MMServeError

INPUT_RATES = (24000,)  # OpenAI's audio/pcm is 24 kHz only (its types say so); the gateway resamples for ASR
OUTPUT_RATE = 24000


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AudioFormat(Lenient):
    type: Literal["audio/pcm"] = Field("audio/pcm", description="PCM16 little-endian mono")
    rate: int = 24000


SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 300}  # semantic_vad's eagerness


class TurnDetection(Lenient):
    """OpenAI's `server_vad` fields; `semantic_vad` is served by the same detector, its eagerness picking
    the silence that ends a turn (SEMANTIC_SILENCE_MS) unless `silence_duration_ms` is given."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.05, le=0.95, description="Silero speech probability that starts speech")
    prefix_padding_ms: int = Field(300, ge=0, le=2000, description="audio kept before the detected start")
    silence_duration_ms: int = Field(500, ge=100, le=5000)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool = True
    interrupt_response: bool = True

    @model_validator(mode="after")
    def _semantic_silence(self):
        if self.type == "semantic_vad" and "silence_duration_ms" not in self.model_fields_set:
            self.silence_duration_ms = SEMANTIC_SILENCE_MS[self.eagerness or "auto"]
        return self

    def shown(self) -> dict:
        """As the session object shows it."""
        shown = self.model_dump(exclude={"eagerness"} if self.type == "server_vad" else set())
        if self.type == "semantic_vad":
            shown["eagerness"] = self.eagerness or "auto"
        return shown


class Transcription(Lenient):
    """`audio.input.transcription`: the ASR model (a served name, or one of OpenAI's, which stands for the
    default ASR model); `prompt` goes to it as hotwords (as on /v1/audio/transcriptions), `language` is kept."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class AudioInput(Lenient):
    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)
    transcription: Transcription | None = None


class AudioOutput(Lenient):
    format: AudioFormat | None = None
    voice: str | None = None


class SessionAudio(Lenient):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class SessionUpdate(Lenient):
    type: Literal["realtime", "transcription"] | None = None  # None: the session's type stays
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = Field(None, min_length=1, max_length=1)
    audio: SessionAudio | None = None
    max_output_tokens: int | Literal["inf"] | None = None


class ContentPart(Lenient):
    type: Literal["input_text", "text", "output_text"]
    text: str


class ConversationItem(Lenient):
    type: Literal["message"]
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart] = Field(min_length=1)


class ResponseOptions(Lenient):
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = Field(None, min_length=1, max_length=1)
    max_output_tokens: int | Literal["inf"] | None = None


class ClientEvent(Lenient):
    type: str
    event_id: str | None = None
    session: SessionUpdate | None = None
    audio: str | None = None
    item: ConversationItem | None = None
    response: ResponseOptions | None = None


CLIENT_EVENTS = {"session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                 "input_audio_buffer.clear", "conversation.item.create", "response.create", "response.cancel"}
REQUIRED = {"session.update": "session", "input_audio_buffer.append": "audio", "conversation.item.create": "item"}


def parse_client_event(raw: Any) -> ClientEvent:
    """A validated client event; InvalidInput names the bad field (`session.audio.input.format.rate`)."""
    if not isinstance(raw, dict):
        raise InvalidInput("a client event must be a JSON object", field="type")
    kind = raw.get("type")
    if kind not in CLIENT_EVENTS:
        raise InvalidInput(f"unsupported client event type {kind!r}; supported: {', '.join(sorted(CLIENT_EVENTS))}",
                           field="type")
    try:
        event = ClientEvent.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{first['msg']}", field=".".join(str(p) for p in first["loc"])) from None
    if (needed := REQUIRED.get(kind)) and getattr(event, needed) is None:
        raise InvalidInput(f"{kind} needs `{needed}`", field=needed)
    return event


def server_event(kind: str, **fields: Any) -> dict:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(exc: MMServeError, client_event_id: str | None = None) -> dict:
    error = exc.to_dict()["error"]
    error["event_id"] = client_event_id
    return server_event("error", error=error)
