"""POST /v1/chat/completions: `model` names an LLM or a VLM; with none, messages with images go to the
default VLM and text-only ones to the default LLM. `stream: true` answers with OpenAI's SSE chunks."""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

import time
import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from gateway.openai.protocol import ChatBody
from gateway.services import ModelNotFound, Services, services
from gateway.streams import peek, sse_events
from mmserve.errors import InvalidInput
from mmserve.media import decode_data_url, decode_image
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.protocol.vlm import VlmRequest

router = APIRouter(prefix="/v1")


def chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(cid: str, model: str, text: str, finish: str, usage: dict | None) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage}


def chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    payload = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        payload["usage"], payload["choices"] = usage, []
    return payload


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def opening(cid: str, model: str) -> dict:
    return chunk(cid, model, {"role": "assistant", "content": ""})


@router.post("/chat/completions")
async def chat_completions(body: ChatBody, svc: Services = Depends(services)):
    urls = [url for m in body.messages for url in m.image_urls()]
    task = svc.task_of(body.model) if body.model else ("vlm" if urls else "llm")
    if task not in ("llm", "vlm"):
        names = ", ".join(svc.names_for("llm") + svc.names_for("vlm")) or "none"
        raise ModelNotFound(f"model {body.model!r} is not a served chat model; the llm and vlm models served "
                            f"are: {names}", field="model")
    served = svc.model(task, body.model)
    if urls and task == "llm":
        raise InvalidInput(f"model {served.name!r} does not accept images", field="messages")
    max_new = body.max_completion_tokens or body.max_tokens
    cid = chat_id()
    if task == "vlm":
        return await vlm_chat(svc, served, body, urls, max_new, cid)
    for i, message in enumerate(body.messages):
        svc.limits.check_prompt(message.text(), f"messages[{i}].content", required=False)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    messages = [ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
                for m in body.messages]
    params = GenerationParams(max_new_tokens=max_new, temperature=body.temperature, top_p=body.top_p,
                              seed=body.seed, stop=stop)
    if not body.stream:
        result = await svc.stages.run("llm", served.handle.chat, messages, params)
        usage = usage_of(result.prompt_tokens, result.completion_tokens)
        return completion(cid, served.name, result.text, result.finish_reason, usage)

    _, items = await peek(svc.stages, "llm", served.handle.options(stream=True).stream, messages, params)
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    async def chunks():
        yield opening(cid, served.name)
        result = None
        async for item in items:
            if isinstance(item, ChatResult):
                result = item
                continue
            yield chunk(cid, served.name, {"content": item})
        yield chunk(cid, served.name, {}, result.finish_reason if result else "stop")
        if include_usage and result:
            yield chunk(cid, served.name, {}, usage=usage_of(result.prompt_tokens, result.completion_tokens))

    return StreamingResponse(sse_events(chunks(), "llm"), media_type="text/event-stream")


async def vlm_chat(svc: Services, served, body: ChatBody, urls: list[str], max_new: int | None, cid: str):
    limits = svc.limits
    if len(urls) > limits.max_images_per_request:
        raise InvalidInput(f"at most {limits.max_images_per_request} images per request", field="messages")
    images = [decode_image(decode_data_url(url, field="image_url"), max_pixels=limits.max_image_pixels,
                           field="image_url") for url in urls]
    user_turns = [m for m in body.messages if m.role == "user"]
    question = limits.check_prompt(user_turns[-1].text() if user_turns else "", "messages")
    request = VlmRequest(question=question, images=images, max_new_tokens=max_new,
                         temperature=body.temperature, top_p=body.top_p, seed=body.seed)
    if not body.stream:
        result = await svc.stages.run("vlm", served.handle.answer, request)
        return completion(cid, served.name, result.text, result.finish_reason,
                          usage_of(result.prompt_tokens, result.completion_tokens))
    _, deltas = await peek(svc.stages, "vlm", served.handle.options(stream=True).stream, request, empty="")

    async def chunks():
        yield opening(cid, served.name)
        async for delta in deltas:
            yield chunk(cid, served.name, {"content": delta})
        yield chunk(cid, served.name, {}, "stop")

    return StreamingResponse(sse_events(chunks(), "vlm"), media_type="text/event-stream")
