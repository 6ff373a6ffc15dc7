"""The flows the gateway can run, the model tasks their stages need, and their `flows:` config.

A stage is named after the task whose model it calls. The YAML may name each stage's model; a stage
left unnamed uses its task's default. A flow not named in `flows:` runs when all its required tasks
are served; one named there must have all its models (a config error otherwise, see graphs/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict, Field

from graphs.image_to_speech import ImageToSpeechArgs, ImageToSpeechFlow
from graphs.speech_to_image import SpeechToImageArgs, SpeechToImageFlow
from graphs.voice_chat import VoiceChatArgs, VoiceChatFlow
from mmserve.config import Strict


@dataclass(frozen=True)
class FlowKind:
    name: str  # the route's and the `flows:` key
    flow: type  # built per request as flow(args, **{stage: handle or None})
    args: type[Strict]  # its settings, with one `<stage>: model name | None` field per stage
    required: tuple[str, ...]  # stages it cannot run without
    optional: tuple[str, ...] = ()  # stages it uses when a model of their task is served

    @property
    def stages(self) -> tuple[str, ...]:
        return self.required + self.optional


FLOW_KINDS = {kind.name: kind for kind in (
    FlowKind("speech-to-image", SpeechToImageFlow, SpeechToImageArgs, ("asr", "image"), ("llm",)),
    FlowKind("voice-chat", VoiceChatFlow, VoiceChatArgs, ("asr", "llm", "tts")),
    FlowKind("image-to-speech", ImageToSpeechFlow, ImageToSpeechArgs, ("vlm", "tts"), ("asr",)),
)}


class FlowsArgs(Strict):
    """`flows:` in the app config; keys are the flow names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    speech_to_image: SpeechToImageArgs | None = Field(None, alias="speech-to-image")
    voice_chat: VoiceChatArgs | None = Field(None, alias="voice-chat")
    image_to_speech: ImageToSpeechArgs | None = Field(None, alias="image-to-speech")

    def named(self) -> dict[str, Strict]:
        """The flows the YAML names explicitly, by flow name."""
        return {name: args for name in FLOW_KINDS if (args := getattr(self, name.replace("-", "_"))) is not None}

    def args_of(self, name: str) -> Strict:
        return self.named().get(name) or FLOW_KINDS[name].args()
