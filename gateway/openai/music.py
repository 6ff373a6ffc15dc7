"""POST /v1/audio/music: a prompt in, a WAV clip out (Stable Audio; not an OpenAI endpoint)."""
# No `from __future__ import annotations`: FastAPI must resolve route parameter types.

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gateway.openai.protocol import MusicBody
from gateway.services import Services, services
from mmserve.protocol.music import MusicRequest

router = APIRouter(prefix="/v1")


@router.post("/audio/music")
async def music(body: MusicBody, svc: Services = Depends(services)) -> Response:
    served = svc.model("music", body.model)
    prompt = svc.limits.check_prompt(body.prompt, "prompt")
    request = MusicRequest(**body.model_dump(exclude={"model"}) | {"prompt": prompt})
    wav = await svc.stages.run("music", served.handle.generate_wav, request)
    return Response(wav, media_type="audio/wav")
