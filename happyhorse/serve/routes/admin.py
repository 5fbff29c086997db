"""/v1/admin: every client's jobs, the costs, and retrying a failed job; the admin token only."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query

from ..deps import require_admin, service
from ..errors import APIError
from ..service import Service
from .videos import video_object

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/jobs")
def admin_jobs(
    svc: Service = Depends(service),
    after: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    order: Literal["asc", "desc"] = Query("desc"),
) -> dict:
    """Every client's jobs, with the client (a token hash or an address) and the attempt count."""
    jobs, more = svc.page(None, after, limit, order)
    data = [{**video_object(j, svc.config), "client": j.client, "attempts": j.attempts} for j in jobs]
    return {"object": "list", "data": data, "has_more": more}


@router.get("/costs")
def admin_costs(svc: Service = Depends(service)) -> dict:
    """Compute seconds and price over finished jobs, per model: the cost side of cost-to-quality."""
    return {**svc.store.totals(), "currency": svc.config.currency, "price_per_hour": svc.config.price_per_hour}


@router.post("/videos/{video_id}/retry")
def admin_retry(video_id: str, svc: Service = Depends(service)) -> dict:
    """Queue a failed job again (its attempts count on)."""
    job = svc.store.requeue(video_id) if svc.store.is_id(video_id) else None
    if job is None:
        raise APIError(404, f"video_id: no failed video with id {video_id[:80]!r}", param="video_id")
    svc.enqueue(job)
    return video_object(job, svc.config)
