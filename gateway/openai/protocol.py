"""OpenAI request bodies (pydantic, torch-free), validated by FastAPI before a route runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mmserve.protocol.music import MusicRequest


class Body(BaseModel):
    """OpenAI clients send fields we do not use (user, quality, ...): accept and ignore them."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- /v1/audio/speech
class VoiceId(Body):
    id: str


class SpeechBody(Body):
    model: str | None = None
    input: str
    voice: str | VoiceId | None = Field(None, description="a configured voice, or one of OpenAI's names (alloy, "
                                        "ash, ...), which each TTS family maps onto its own speakers")
    instructions: str | None = Field(None, description="how to speak; ChatTTS honours [oral_N] [laugh_N] "
                                     "[break_N] tokens in it and ignores other text")
    response_format: Literal["wav", "pcm", "mp3", "flac"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream: bool = Field(True, description="wav and pcm leave chunk by chunk as they are synthesized")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: the bytes themselves; sse: speech.audio.delta events (base64 pcm, or wav "
                             "with a streaming header in the first delta; pcm when response_format is unset), "
                             "then speech.audio.done")
    seed: int | None = None
    speaker_seed: int | None = Field(None, description="a voice by seed instead of a named voice")
    speaker_embedding: str | None = Field(None, description="ChatTTS's encoded speaker embedding")


# ---------------------------------------------------------------- /v1/images/generations
class ImageBody(Body):
    model: str | None = None
    prompt: str
    n: int = 1
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. 1024x1024")
    response_format: Literal["b64_json", "url"] = "b64_json"
    negative_prompt: str = ""
    steps: int | None = Field(None, alias="num_inference_steps")
    guidance_scale: float | None = None
    seed: int | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---------------------------------------------------------------- /v1/audio/music (no OpenAI twin)
class MusicBody(MusicRequest):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None


# ---------------------------------------------------------------- /v1/chat/completions
class ImageUrl(Body):
    url: str


class ContentPart(Body):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class MessageIn(Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content if p.type == "text")

    def image_urls(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url]


class ChatBody(Body):
    model: str | None = None
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: dict | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
