"""GET /v1/models: the served models, from config."""

from fastapi import APIRouter, Depends

from graphs.services import Services, services

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(svc: Services = Depends(services)) -> dict:
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "mmserve", "task": m.task}
        for m in svc.models.values()]}
