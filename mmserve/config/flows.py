"""`flows:` in the app config, and what each flow is: its stages, the routes that start it, and the
class that runs it (named by import string, so this schema imports no Ray).

A stage is named after the task whose model it calls. The YAML may name each stage's model; a stage
left unnamed uses its task's default. A flow not named in `flows:` runs when all its required tasks
are served; one named there must have all its models (a config error otherwise, see AppArgs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ConfigDict, Field

from mmserve.config import Strict


class SpeechToImageArgs(Strict):
    asr: str | None = Field(None, description="speech recognition model name (None: the asr default)")
    llm: str | None = Field(None, description="prompt-rewriting LLM name (None: the llm default, if any)")
    image: str | None = Field(None, description="image model name (None: the image default)")
    rewrite_prompt: bool = Field(True, description="LLM rewrites the transcript into an English prompt")
    rewrite_max_new_tokens: int = Field(96, ge=1)
    rewrite_temperature: float = Field(0.0, ge=0)


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
    first_clause_max_chars: int = Field(
        24, ge=8, description="the first clause is cut sooner, so speech starts while the LLM writes on")


class ImageToSpeechArgs(Strict):
    vlm: str | None = Field(None, description="vision-language model name (None: the vlm default)")
    tts: str | None = Field(None, description="speech synthesis model name (None: the tts default)")
    asr: str | None = Field(None, description="speech recognition model name, for spoken questions (None: the "
                            "asr default, if any)")
    describe_prompt: str = "Describe this image in detail for someone who cannot see it."
    max_new_tokens: int = Field(256, ge=1)


@dataclass(frozen=True)
class Flow:
    name: str  # the `flows:` key and the last part of its routes' paths
    runs: str  # "module:Class" of the flow, built per request as Class(args, **{stage: handle or None})
    args: type[Strict]  # its settings, with one `<stage>: model name | None` field per stage
    required: tuple[str, ...]  # stages it cannot run without (task names)
    optional: tuple[str, ...] = ()  # stages it uses when a model of their task is served
    routes: dict[str, str] = field(default_factory=dict)  # HTTP path -> the task its first model call goes to
    # deadlines of stages that are not a task's own call: stage -> (default seconds, what it is)
    extra_stages: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def stages(self) -> tuple[str, ...]:
        return self.required + self.optional


FLOW_PREFIX = "/v1/flows"  # each flow's routes: one name for package docs, config key and URLs
# What the routes were called before (answered as well, for clients written then; not in the API docs)
LEGACY_FLOW_PREFIX = "/v1/pipelines"
FLOWS: dict[str, Flow] = {flow.name: flow for flow in (
    Flow("speech-to-image", "graphs.speech_to_image:SpeechToImageFlow", SpeechToImageArgs, ("asr", "image"), ("llm",),
         routes={f"{FLOW_PREFIX}/speech-to-image": "asr"},
         extra_stages={"rewrite": (60.0, "speech-to-image's LLM prompt rewrite")}),
    Flow("voice-chat", "graphs.voice_chat:VoiceChatFlow", VoiceChatArgs, ("asr", "llm", "tts"),
         routes={f"{FLOW_PREFIX}/voice-chat": "asr"}),
    Flow("image-to-speech", "graphs.image_to_speech:ImageToSpeechFlow", ImageToSpeechArgs, ("vlm", "tts"), ("asr",),
         routes={f"{FLOW_PREFIX}/describe-aloud": "vlm", f"{FLOW_PREFIX}/spoken-question": "asr"}),
)}


class FlowsArgs(Strict):
    """`flows:` in the app config; keys are the flow names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    speech_to_image: SpeechToImageArgs | None = Field(None, alias="speech-to-image")
    voice_chat: VoiceChatArgs | None = Field(None, alias="voice-chat")
    image_to_speech: ImageToSpeechArgs | None = Field(None, alias="image-to-speech")

    def named(self) -> dict[str, Strict]:
        """The flows the YAML names explicitly, by flow name."""
        return {name: args for name in FLOWS if (args := getattr(self, name.replace("-", "_"))) is not None}

    def args_of(self, name: str) -> Strict:
        return self.named().get(name) or FLOWS[name].args()
