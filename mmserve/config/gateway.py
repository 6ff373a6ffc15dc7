"""`gateway:` in the app config: the HTTP ingress's keys, limits, stage deadlines and /v1/realtime."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from mmserve.config import DeploymentArgs, Strict
from mmserve.config.flows import FLOWS
from mmserve.limits import Limits
from mmserve.tasks import TASKS


class ImageDefaults(Strict):
    """Sizes used when a request names none (SD3 Medium is trained at 1024x1024)."""

    width: int = 1024
    height: int = 1024


def _stage_deadline_fields() -> dict:
    fields = {name: (float | None, Field(task.deadline_s, gt=0)) for name, task in TASKS.items()}
    for flow in FLOWS.values():
        for stage, (seconds, what) in flow.extra_stages.items():
            fields[stage] = (float | None, Field(seconds, gt=0, description=what))
    return fields


# One field per task (its declared deadline) and per flow-only stage (e.g. speech-to-image's rewrite).
StageDeadlines = create_model(
    "StageDeadlines", __base__=Strict, __doc__=(
        "Seconds a stage may take before the request gets a 504 naming it (a streamed stage: for its "
        "first item, then between items); None: no deadline. Keep them below http_options.request_timeout_s."),
    **_stage_deadline_fields())


class RealtimeArgs(Strict):
    """Limits of `/v1/realtime`, per gateway replica."""

    max_sessions: int = Field(32, ge=1, description="concurrent sessions per gateway replica; more are refused")
    max_session_s: float = Field(1800, gt=0, description="a session is closed after this long")
    idle_timeout_s: float = Field(120, gt=0, description="closed after this long without a client event, "
                                  "unless a turn or response is under way")
    max_buffered_audio_s: float = Field(60, gt=0, description="input audio held before a commit")
    turn_detector: Literal["silero", "asr"] = Field(
        "silero", description="silero: Silero VAD's ONNX weights in the gateway replica, no Serve call per "
        "chunk; asr: the ASR model's streaming FSMN-VAD, called through Serve (vad_chunk_ms, vad_listen_chunk_ms)")
    vad_chunk_ms: int = Field(40, ge=20, le=1000, description="audio per streaming-VAD call while speech is under "
                              "way: the end of a turn is heard this much sooner; more calls the ASR model less often")
    vad_listen_chunk_ms: int = Field(120, ge=20, le=1000, description="audio per streaming-VAD call while waiting "
                                     "for speech (most of a session): larger costs the ASR model less, and "
                                     "hears the start of speech (and barge-in) up to this much later")
    max_history_messages: int = Field(20, ge=2, description="conversation turns sent to the LLM")
    partials_model: str | None = Field(
        None, description="a streaming ASR model (family funasr-paraformer-streaming) that gives partial "
        "transcripts (...input_audio_transcription.delta) while the user speaks; the turn's final text still "
        "comes from the session's ASR model (two-pass). None: no partials")


class GatewayArgs(Strict):
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys; MMSERVE_API_KEYS adds more")
    limits: Limits = Field(default_factory=Limits)
    image_defaults: ImageDefaults = Field(default_factory=ImageDefaults)
    stage_deadlines_s: StageDeadlines = Field(default_factory=StageDeadlines)
    saturated_hold_s: float = Field(
        1.0, gt=0, description="after a model refuses a call (queue full), requests that can only reach it are "
        "refused before their body is read until one of its calls finishes or this many seconds pass")
    realtime: RealtimeArgs = Field(default_factory=RealtimeArgs)
    deployment: DeploymentArgs = Field(
        default_factory=lambda: DeploymentArgs(num_cpus=0.5, max_ongoing_requests=64, max_queued_requests=256))

    def without_partials(self) -> "GatewayArgs":
        """These settings for an app without the streaming ASR model they name (partial transcripts off),
        e.g. a benchmark or test app cut from a bigger config."""
        return self.model_copy(update={"realtime": self.realtime.model_copy(update={"partials_model": None})})
