"""GET /v1/models: every served model, with its task and runner family, from config; each LoRA adapter
too, with its base model as OpenAI's `parent` and `root`."""

from fastapi import APIRouter, Depends

from gateway.services import Services, services

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(svc: Services = Depends(services)) -> dict:
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "mmserve", "task": m.task,
         "family": m.family, **({"parent": m.base, "root": m.base} if m.base else {})}
        for m in [*svc.models.values(), *svc.adapters.values()]]}
