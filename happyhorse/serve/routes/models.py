"""/v1/models: the one served model, with the defaults a request falls back on."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..deps import client_id, service
from ..errors import APIError
from ..service import Service

router = APIRouter(tags=["models"], dependencies=[Depends(client_id)])


def model_object(svc: Service) -> dict:
    model = svc.model_info()
    return {"id": model.id, "object": "model", "created": 0, "owned_by": "happyhorse", "defaults": model.model_dump()}


@router.get("/v1/models")
def list_models(svc: Service = Depends(service)) -> dict:
    return {"object": "list", "data": [model_object(svc)]}


@router.get("/v1/models/{model_id}")
def retrieve_model(model_id: str, svc: Service = Depends(service)) -> dict:
    if model_id != svc.model_info().id:
        raise APIError(404, f"model_id: no model {model_id[:80]!r}", param="model_id", code="not_found")
    return model_object(svc)
