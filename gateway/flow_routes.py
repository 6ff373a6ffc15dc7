"""One HTTP route per cross-modal flow, beside the OpenAI routes, under /v1/flows/.

Each takes `<stage>_model` form fields (e.g. `asr_model`) to pick a stage's model by name for one
request; unset, the stage uses the model the `flows:` config names, else its task's default.
"""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.


from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from gateway.services import Services, services
from gateway.streams import sse_events
from gateway.uploads import read_upload
from mmserve.errors import InvalidInput
from mmserve.media import b64encode, decode_audio, decode_image

router = APIRouter()  # served under FLOW_PREFIX (and LEGACY_FLOW_PREFIX), see gateway/ingress.py


def model_field(stage: str):
    return Form(None, description=f"the {stage} model for this request, by name (default: from config)")


async def read_audio(file: UploadFile, svc: Services):
    return decode_audio(await read_upload(file, svc.limits, "file"), max_seconds=svc.limits.max_audio_s)


async def read_images(files: list[UploadFile], svc: Services):
    if len(files) > svc.limits.max_images_per_request:
        raise InvalidInput(f"at most {svc.limits.max_images_per_request} images per request", field="image")
    return [decode_image(await read_upload(f, svc.limits, "image"), max_pixels=svc.limits.max_image_pixels,
                         field="image") for f in files]


@router.post("/speech-to-image")
async def speech_to_image(
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
    asr_model: str | None = model_field("asr"),
    llm_model: str | None = model_field("llm"),
    image_model: str | None = model_field("image"),
    svc: Services = Depends(services),
) -> dict:
    flow = svc.flow("speech-to-image", asr=asr_model, llm=llm_model, image=image_model)
    limits = svc.limits
    width = width or svc.image_defaults.width
    height = height or svc.image_defaults.height
    limits.check_image_options(width=width, height=height, steps=steps, guidance=guidance, n=n)
    negative_prompt = limits.check_prompt(negative_prompt, "negative_prompt", required=False)
    audio = await read_audio(file, svc)
    words = [w.strip() for w in hotwords.split(",") if w.strip()] or None
    image_options = dict(width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
                         negative_prompt=negative_prompt, seed=seed, num_images=n)
    result = await flow.run(audio, image_options, hotwords=words, rewrite=rewrite)
    return {
        "transcript": result.transcript,
        "timestamps": result.timestamps,
        "audio_duration_s": round(result.audio_duration_s, 3),
        "prompt": result.prompt,
        "images": [{"b64_json": b64encode(png), "mime_type": "image/png"} for png in result.images_png],
        "timings": result.timings,
    }


@router.post("/describe-aloud")
async def describe_aloud(
    image: list[UploadFile] = File(..., description="one or more images (PNG, JPEG, WebP, ...)"),
    question: str | None = Form(None, description="what to say about the image (default: describe it)"),
    voice: str | None = Form(None),
    vlm_model: str | None = model_field("vlm"),
    tts_model: str | None = model_field("tts"),
    svc: Services = Depends(services),
) -> dict:
    flow = svc.flow("image-to-speech", vlm=vlm_model, tts=tts_model)
    if question is not None:
        question = svc.limits.check_prompt(question, "question")
    return await flow.describe(await read_images(image, svc), question=question, voice=voice)


@router.post("/spoken-question")
async def spoken_question(
    image: list[UploadFile] = File(...),
    file: UploadFile = File(..., description="the spoken question"),
    voice: str | None = Form(None),
    asr_model: str | None = model_field("asr"),
    vlm_model: str | None = model_field("vlm"),
    tts_model: str | None = model_field("tts"),
    svc: Services = Depends(services),
) -> dict:
    flow = svc.flow("image-to-speech", asr=asr_model, vlm=vlm_model, tts=tts_model)
    images = await read_images(image, svc)
    return await flow.spoken_question(images, await read_audio(file, svc), voice=voice)


@router.post("/voice-chat")
async def voice_chat(
    file: UploadFile = File(..., description="what the user said"),
    voice: str | None = Form(None),
    system_prompt: str | None = Form(None),
    stream: bool = Form(True, description="server-sent events, audio chunk by chunk as it is spoken; false: one JSON, "
                        "audio clause by clause"),
    asr_model: str | None = model_field("asr"),
    llm_model: str | None = model_field("llm"),
    tts_model: str | None = model_field("tts"),
    svc: Services = Depends(services),
):
    flow = svc.flow("voice-chat", asr=asr_model, llm=llm_model, tts=tts_model)
    if system_prompt is not None:
        system_prompt = svc.limits.check_prompt(system_prompt, "system_prompt")
    events = await flow.start(await read_audio(file, svc), voice=voice, system_prompt=system_prompt, chunked=stream)
    if not stream:
        collected = [event async for event in events]
        done = collected[-1]
        return {"transcript": collected[0]["text"], "reply": done["reply"],
                "clauses": [e for e in collected if e["type"] in ("audio", "skipped")], "timings": done["timings"]}
    return StreamingResponse(sse_events(events, "voice-chat"), media_type="text/event-stream")


