"""/v1/videos: create, list, retrieve, download and delete video jobs, in the shape of OpenAI's Videos API."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from ..config import ServeConfig
from ..deps import client_id, service
from ..errors import APIError
from ..request import create_request_schema, parse_params, read_create_body, request_fields, store_reference, uploads
from ..service import Service
from ..storage import video_keys
from ..store import ACTIVE, Job
from ..worker import remove_outputs

router = APIRouter(tags=["videos"])
POLL_AFTER_MS = 250  # told to polling clients (openai-poll-after-ms) while a job is queued or running
CONTENT = {
    "video": ("video", "video/mp4", "mp4"),
    "thumbnail": ("thumbnail", "image/png", "png"),
    "spritesheet": ("spritesheet", "image/png", "png"),
}


def format_seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def video_object(job: Job, config: ServeConfig) -> dict[str, Any]:
    """A job in the shape of OpenAI's `Video`, plus HappyHorse's `seed`, `mode` and `cost`."""
    error = {"code": job.error_code, "message": job.error_message} if job.status == "failed" else None
    cost = None
    if job.compute_seconds is not None:
        cost = {
            "compute_seconds": round(job.compute_seconds, 4),
            "price": job.price,
            "currency": config.currency,
            "price_per_hour": config.price_per_hour,
        }
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": job.status,
        "progress": job.progress,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "expires_at": (
            int(job.completed_at + config.keep_hours * 3600) if config.keep_hours and job.completed_at else None
        ),
        "prompt": job.prompt,
        "seconds": job.seconds,
        "size": job.size,
        "remixed_from_video_id": None,
        "error": error,
        "seed": job.params.get("seed"),
        "mode": job.params.get("mode"),
        "cost": cost,
    }


@router.post("/v1/videos", openapi_extra=create_request_schema())
async def create_video(
    request: Request, client: str = Depends(client_id), svc: Service = Depends(service)
) -> JSONResponse:
    """Queue a video job; poll GET /v1/videos/{id} until `completed`, then download its content."""
    config, model = svc.config, svc.model_info()
    body, files = await read_create_body(request)
    params = parse_params(body)
    fields = request_fields(params, svc.pipe, model.id, model.model_dump(), config)
    image, sound = uploads(params, files)
    await run_in_threadpool(svc.admit, client)  # refuse early, before decoding uploads
    job_params = {**fields, "mode": "T" + ("I" if image else "") + ("A" if sound else "") + "2V"}
    job_params["priority"] = params.priority or 0
    try:
        if image:
            job_params["image"], _ = await run_in_threadpool(store_reference, image, "image", config, svc.storage)
        if sound:
            job_params["audio"], length = await run_in_threadpool(store_reference, sound, "audio", config, svc.storage)
            if job_params["seconds"] is None:  # as long as the soundtrack, within this server's limits
                job_params["seconds"] = min(max(length, config.min_seconds), config.max_seconds)
        if job_params["seconds"] is None:
            job_params["seconds"] = model.seconds
        job = await run_in_threadpool(
            svc.admit_and_create,
            client,
            model=model.id,
            prompt=params.prompt,
            params=job_params,
            seconds=format_seconds(job_params["seconds"]),
            size=f"{job_params['width']}x{job_params['height']}",
        )
    except APIError:  # the stored references of a refused request go too
        svc.storage.delete([job_params[key] for key in ("image", "audio") if job_params.get(key)])
        raise
    svc.wake.set()
    return JSONResponse(video_object(job, config), headers={"openai-poll-after-ms": str(POLL_AFTER_MS)})


@router.get("/v1/videos")
def list_videos(
    client: str = Depends(client_id),
    svc: Service = Depends(service),
    after: str | None = Query(None, max_length=200, description="Id of the last video of the previous page."),
    limit: int = Query(20, ge=1, description="Videos per page, at most the server's page limit (100 by default)."),
    order: Literal["asc", "desc"] = Query("desc", description="By creation time."),
) -> dict:
    """Videos, newest first by default; page on with `after` = the previous page's `last_id`."""
    if limit > svc.config.page_limit:
        raise APIError(400, f"limit: at most {svc.config.page_limit}, got {limit}", param="limit", code="invalid_value")
    jobs, more = svc.page(svc.owner(client), after, limit, order)
    data = [video_object(job, svc.config) for job in jobs]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


@router.get("/v1/videos/{video_id}")
def retrieve_video(video_id: str, client: str = Depends(client_id), svc: Service = Depends(service)) -> JSONResponse:
    job = svc.find(video_id, client)
    headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)} if job.status in ACTIVE else None
    return JSONResponse(video_object(job, svc.config), headers=headers)


@router.get(
    "/v1/videos/{video_id}/content",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}, "image/png": {}}}},
)
def download_content(
    video_id: str,
    client: str = Depends(client_id),
    svc: Service = Depends(service),
    variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
):
    """The MP4 (H.264 + AAC), or a PNG of the first frame (thumbnail) or of 16 frames (spritesheet)."""
    job = svc.find(video_id, client)
    if job.status != "completed":
        raise APIError(
            409, f"video_id: {job.id} is {job.status}; content exists once it is completed", code="not_ready"
        )
    key, media_type, suffix = CONTENT[variant]
    try:
        return svc.storage.response(video_keys(job.id)[key], media_type, f"{job.id}.{suffix}")
    except FileNotFoundError:
        raise APIError(404, f"variant: the {variant} of {job.id} is missing in storage", param="variant") from None


@router.delete("/v1/videos/{video_id}")
def delete_video(video_id: str, client: str = Depends(client_id), svc: Service = Depends(service)) -> dict:
    """Remove a job and its files; a queued job never runs, a running one stops at its next step."""
    job = svc.find(video_id, client)
    svc.store.delete(job.id)
    remove_outputs(svc.storage, job)
    return {"id": job.id, "object": "video.deleted", "deleted": True}
