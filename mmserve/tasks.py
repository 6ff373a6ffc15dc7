"""Every task mmserve serves, one declaration each: what a new task is, in one place.

A task is a kind of model call (speech recognition, text-to-image, ...). Its declaration names the
runner interface its deployment calls (a `Protocol` in its protocol module, checked against every
family of the task by a test), its deployment class, whether that deployment batches, its default
stage deadline and the HTTP routes that call its models first. The app builder, the gateway's
admission and stage deadlines, the config schema and the load tool all read these records; none
lists the tasks again. Torch- and Ray-free: deployments are named by import string.

Adding a task: a protocol module (request/result types and the runner `Protocol`), a deployment,
a router, and one line below.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmserve.protocol import asr, image, llm, music, tts, vlm


@dataclass(frozen=True)
class Task:
    name: str  # the `task` of its families, and the stage name in flows and deadlines
    runner: type  # the typing.Protocol its deployment calls on a runner
    deployment: str  # "module:Class" of its Serve deployment, imported only by the app builder
    router: str  # "module:router" of its HTTP routes (a FastAPI APIRouter), included by the gateway
    deadline_s: float  # default seconds a call may take (a stream: to its first item, then between items)
    routes: tuple[str, ...] = ()  # HTTP paths whose first model call goes to this task
    batches: bool = False  # its deployment batches calls (`@serve.batch`), so a model may set `batch:`


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("asr", asr.AsrRunner, "deployments.asr:SpeechRecognition", "gateway.openai.transcriptions:router", 60.0,
         ("/v1/audio/transcriptions",)),
    Task("image", image.ImageRunner, "deployments.image:ImageGeneration", "gateway.openai.images:router", 240.0,
         ("/v1/images/generations",), batches=True),
    Task("llm", llm.LlmRunner, "deployments.llm:ChatLLM", "gateway.openai.chat:router", 120.0,
         ("/v1/chat/completions",)),
    Task("tts", tts.TtsRunner, "deployments.tts:SpeechSynthesis", "gateway.openai.speech:router", 60.0,
         ("/v1/audio/speech",), batches=True),
    Task("vlm", vlm.VlmRunner, "deployments.vlm:VisionLanguage", "gateway.openai.chat:router", 120.0,
         ("/v1/chat/completions",)),  # one chat route for both: the request's model (or images) picks the task
    Task("music", music.MusicRunner, "deployments.music:MusicGeneration", "gateway.openai.music:router", 240.0,
         ("/v1/audio/music",)),
)}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (one of {', '.join(TASKS)})")
    return TASKS[name]
