"""The HTTP face of mmserve: one FastAPI ingress deployment holding handles to the models.

Media is decoded and limits are checked here, once, so model replicas only see valid arrays.
"""
# No `from __future__ import annotations` here: FastAPI must resolve route parameter types.

from fastapi import FastAPI, File, Form, Request, UploadFile
from pydantic import Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from graphs.errors import error_response, install_error_handlers
from graphs.speech_to_image import SpeechToImageArgs, SpeechToImageFlow
from mmserve.config import DeploymentArgs, Strict
from mmserve.errors import PayloadTooLarge
from mmserve.limits import Limits
from mmserve.media import b64encode, decode_audio

app = FastAPI(title="mmserve", version="0.1.0")
install_error_handlers(app)
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@app.middleware("http")
async def refuse_oversized_bodies(request: Request, call_next):
    """413 from the Content-Length header alone, before a large body is read and parsed."""
    limit = getattr(app.state, "max_body_bytes", None)
    declared = request.headers.get("content-length")
    if limit and declared and declared.isdigit() and int(declared) > limit:
        return error_response(PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}"))
    return await call_next(request)


class ImageDefaults(Strict):
    """Sizes used when a request names none (SD3 Medium is trained at 1024x1024)."""

    width: int = 1024
    height: int = 1024


class GatewayArgs(Strict):
    limits: Limits = Field(default_factory=Limits)
    image_defaults: ImageDefaults = Field(default_factory=ImageDefaults)
    speech_to_image: SpeechToImageArgs = Field(default_factory=SpeechToImageArgs)
    deployment: DeploymentArgs = Field(
        default_factory=lambda: DeploymentArgs(num_cpus=0.5, max_ongoing_requests=64, max_queued_requests=256))


async def read_upload(upload: UploadFile, limits: Limits, field: str) -> bytes:
    """The upload's bytes, refused with 413 before reading when its declared size is too large."""
    if upload.size is not None:
        limits.check_upload_size(upload.size, field)
    data = await upload.read()
    limits.check_upload_size(len(data), field)
    return data


@serve.deployment(name="gateway")
@serve.ingress(app)
class Gateway:
    def __init__(self, args: GatewayArgs, asr: DeploymentHandle, llm: DeploymentHandle,
                 image: DeploymentHandle):
        self.limits = args.limits
        app.state.max_body_bytes = args.limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        self.image_defaults = args.image_defaults
        self.speech_to_image = SpeechToImageFlow(args.speech_to_image, asr=asr, llm=llm, image=image)

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.post("/v1/pipelines/speech-to-image")
    async def speech_to_image_route(
        self,
        file: UploadFile = File(..., description="speech: WAV, FLAC, OGG or MP3, any rate, mono or stereo"),
        width: int | None = Form(None),
        height: int | None = Form(None),
        steps: int | None = Form(None),
        guidance: float | None = Form(None),
        negative_prompt: str = Form(""),
        seed: int | None = Form(None),
        n: int = Form(1),
        rewrite: bool | None = Form(None, description="LLM rewrites the transcript (default from config)"),
        hotwords: str = Form("", description="comma-separated words the recognizer should favour"),
    ) -> dict:
        limits = self.limits
        width = width or self.image_defaults.width
        height = height or self.image_defaults.height
        limits.check_image_options(width=width, height=height, steps=steps, guidance=guidance, n=n)
        negative_prompt = limits.check_prompt(negative_prompt, "negative_prompt", required=False)
        audio = decode_audio(await read_upload(file, limits, "file"), max_seconds=limits.max_audio_s)
        words = [w.strip() for w in hotwords.split(",") if w.strip()] or None
        image_options = dict(width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
                             negative_prompt=negative_prompt, seed=seed, num_images=n)
        result = await self.speech_to_image.run(audio, image_options, hotwords=words, rewrite=rewrite)
        return {
            "transcript": result.transcript,
            "timestamps": result.timestamps,
            "audio_duration_s": round(result.audio_duration_s, 3),
            "prompt": result.prompt,
            "images": [{"b64_json": b64encode(png), "mime_type": "image/png"} for png in result.images_png],
            "timings": result.timings,
        }
