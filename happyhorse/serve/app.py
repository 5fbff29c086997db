"""The HTTP service: OpenAI's Videos API shape over the HappyHorse pipeline, persistent jobs, a web studio.

Routes (an official `openai` client works unchanged against /v1):
  POST   /v1/videos                  create a job (multipart, as the openai client sends, or JSON)
  GET    /v1/videos                  list jobs, newest first, cursor-paginated (after, limit, order)
  GET    /v1/videos/{id}             one job: status, progress %, cost, error
  GET    /v1/videos/{id}/content     the MP4 (variant=video), or a PNG thumbnail / spritesheet
  DELETE /v1/videos/{id}             remove a job and its files (a running one stops at its next step)
  GET    /v1/models                  the served model
  GET    /v1/admin/jobs, /v1/admin/costs, POST /v1/admin/videos/{id}/retry   admin token only
  GET    /health, /metrics           liveness and Prometheus figures
  GET    /                           the studio page
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import importlib.util
import logging
import math
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from ..media import MediaError, read_audio, read_image, save_audio, save_image
from ..pipeline import MAX_SECONDS as PIPELINE_MAX_SECONDS
from ..pipeline import dtype_name
from .config import ServeConfig, check_model_dir
from .errors import APIError, BodyTooLarge, RequestGuard, install_error_handlers
from .store import ACTIVE, Job, JobStore
from .worker import Worker, output_paths, remove_outputs

log = logging.getLogger("happyhorse.serve")
STATIC = Path(__file__).parent / "static"
POLL_AFTER_MS = 250  # told to polling clients (openai-poll-after-ms) while a job is queued or running
MAX_SEED = 2**63 - 1
VIDEO_ID = re.compile(r"^video_[0-9a-f]{32}$")  # the ids store.create makes; anything else is no video
SIZE_PATTERN = re.compile(r"^(\d{1,5})x(\d{1,5})$")
DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*;base64,(.*)$", re.DOTALL)
CONTENT = {
    "video": ("video", "video/mp4", "mp4"),
    "thumbnail": ("thumbnail", "image/png", "png"),
    "spritesheet": ("spritesheet", "image/png", "png"),
}


class VideoCreateParams(BaseModel):
    """The fields of POST /v1/videos. Multipart requests (the openai client's) carry the same fields as
    form fields, with `input_reference` (first frame) and `audio_reference` (soundtrack) as file parts;
    JSON requests give them as `{"image_url": "data:..."}` / `{"audio_url": "data:..."}`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What to generate.")
    model: str | None = Field(None, description="The served model's id (GET /v1/models); default: it.")
    seconds: str | float | None = Field(None, description='Clip length in seconds, e.g. "4" or "1.5".')
    size: str | None = Field(None, description='WIDTHxHEIGHT in pixels, e.g. "64x64"; default: the model\'s.')
    seed: int | None = Field(None, description="Random seed; the same seed gives the same clip. Default 0.")
    num_inference_steps: int | None = Field(None, description="Sampling steps; default: the model's.")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance; default: the model's.")
    input_reference: dict[str, str] | None = Field(None, description='First frame: {"image_url": data URL}.')
    audio_reference: dict[str, str] | None = Field(None, description='Soundtrack: {"audio_url": data URL}.')


def _create_request_schema() -> dict:
    json_schema = VideoCreateParams.model_json_schema()
    form = {k: v for k, v in json_schema["properties"].items() if k not in ("input_reference", "audio_reference")}
    form = {**form, "seconds": {"type": "string"}, "input_reference": {"type": "string", "format": "binary"}}
    form["audio_reference"] = {"type": "string", "format": "binary"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["prompt"], "properties": form}},
                "application/json": {"schema": json_schema},
            },
        }
    }


class ModelInfo(BaseModel):
    id: str
    width: int
    height: int
    seconds: float
    fps: float
    patch: int  # width and height must be multiples of this


class Service:
    """What the routes share: the settings, the store, the workers, the served model's description."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.store = JobStore(config.database_url)
        self.wake = threading.Event()
        self.workers = [Worker(self.store, config, self.wake, k) for k in range(config.workers)]
        self.admission = threading.Lock()  # the queue bound and per-client cap are checked and taken at once
        self.model: ModelInfo | None = None
        self.http_counts: dict[str, int] = {}
        self.recovered: dict[str, int] = {}
        self.arena: str = "absent"
        self.stopping = threading.Event()
        self.sweeper = threading.Thread(target=self._sweep, name="happyhorse-expiry", daemon=True)
        self.expired = 0

    def expire(self, now: float | None = None) -> int:
        """Delete the jobs (rows and files) that finished more than keep_hours ago; returns how many."""
        if not self.config.keep_hours:
            return 0
        cutoff, count = (now or time.time()) - self.config.keep_hours * 3600, 0
        while jobs := self.store.finished_before(cutoff):
            for job in jobs:
                remove_outputs(self.config.data_path, job)  # files first: a crash here leaves a row to retry
                self.store.delete(job.id)
                count += 1
        self.expired += count
        return count

    def _sweep(self) -> None:
        interval = min(60.0, self.config.keep_hours * 360)  # a tenth of the retention, at most a minute
        while not self.stopping.wait(interval):
            try:
                self.expire()
            except Exception:  # a store error: the next round retries
                log.exception("expiry sweep failed")

    def start(self) -> None:
        self.recovered = self.store.recover(self.config.max_attempts)
        if any(self.recovered.values()):
            log.warning("restart recovery: %s", self.recovered)
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.ready.wait()
        loaded = [w for w in self.workers if w.pipe is not None]
        if not loaded:
            self.stop()
            raise RuntimeError(f"model: could not load {self.config.model_dir}: {self.workers[0].load_error}")
        for worker in self.workers:
            if worker.pipe is None:  # e.g. out of memory for one more copy: it would fail every job it took
                log.warning("%s stopped: its model load failed (%s)", worker.name, worker.load_error)
                worker.stop()
        self.workers = loaded
        for worker in loaded:
            worker.go.set()
        pipe = loaded[0].pipe
        self.model = ModelInfo(
            id=pipe.name,
            width=int(pipe.defaults["width"]),
            height=int(pipe.defaults["height"]),
            seconds=float(pipe.defaults["seconds"]),
            fps=float(pipe.defaults["fps"]),
            patch=int(max(pipe.video_codec.patch_h, pipe.video_codec.patch_w)),
        )
        self.wake.set()
        if self.config.keep_hours:
            self.expire()
            self.sweeper.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.sweeper.is_alive():
            self.sweeper.join(timeout=30)
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(timeout=30)
        self.store.close()


# ------------------------------------------------------------------------------------------ helpers


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(token: str | None, keys) -> bool:
    return token is not None and any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


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


def _parse_size(value: str | None, model: ModelInfo, config: ServeConfig) -> tuple[int, int]:
    if value is None:
        return model.width, model.height
    match = SIZE_PATTERN.match(value.strip().lower())
    if not match:
        raise APIError(400, f"size: expected WIDTHxHEIGHT such as 64x64, got {value[:40]!r}", param="size")
    width, height = int(match[1]), int(match[2])
    p = model.patch
    for name, side in (("width", width), ("height", height)):
        if side < p or side > config.max_side or side % p:
            raise APIError(
                400,
                f"size: {name} must be a multiple of {p} in [{p}, {config.max_side}] pixels, got {side}",
                param="size",
            )
    if width * height > config.max_pixels:
        raise APIError(400, f"size: {width}x{height} exceeds the limit of {config.max_pixels} pixels", param="size")
    return width, height


def _parse_seconds(value, config: ServeConfig) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and config.min_seconds <= seconds <= config.max_seconds):
        raise APIError(
            400,
            f"seconds: must be a number in [{config.min_seconds:g}, {config.max_seconds:g}], got {str(value)[:40]!r}",
            param="seconds",
        )
    return seconds


def _check_params(params: VideoCreateParams, model: ModelInfo, config: ServeConfig) -> None:
    if not params.prompt.strip():
        raise APIError(400, "prompt: must not be empty", param="prompt")
    try:
        params.prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "prompt: not valid Unicode text (it holds a lone surrogate)", param="prompt") from None
    if "\x00" in params.prompt:
        raise APIError(400, "prompt: must not contain NUL characters", param="prompt")
    if len(params.prompt) > config.max_prompt_chars:
        raise APIError(
            400,
            f"prompt: at most {config.max_prompt_chars} characters, got {len(params.prompt)}",
            param="prompt",
            code="prompt_too_long",
        )
    if params.model is not None and params.model != model.id:
        raise APIError(
            400, f"model: unknown model {params.model[:80]!r}; this server serves {model.id!r}", param="model"
        )
    if params.seed is not None and not 0 <= params.seed <= MAX_SEED:
        raise APIError(400, f"seed: must be an integer in [0, 2**63 - 1], got {params.seed}", param="seed")
    steps = params.num_inference_steps
    if steps is not None and not 1 <= steps <= config.max_steps:
        raise APIError(
            400,
            f"num_inference_steps: must be an integer in [1, {config.max_steps}], got {steps}",
            param="num_inference_steps",
        )
    g = params.guidance_scale
    if g is not None and not (math.isfinite(g) and 0 <= g <= 30):
        raise APIError(400, f"guidance_scale: must be a number in [0, 30], got {g}", param="guidance_scale")


def _data_url(reference: dict[str, str] | None, key: str, param: str) -> bytes | None:
    if reference is None:
        return None
    unknown = sorted(set(reference) - {key})
    if unknown or key not in reference:
        raise APIError(
            400,
            f"{param}: give {{{key!r}: a base64 data: URL}} (file ids and other keys are not supported), "
            f"got keys {sorted(reference)}",
            param=param,
        )
    match = DATA_URL.match(reference[key])
    if not match:
        raise APIError(
            400, f"{param}.{key}: only base64 data: URLs are accepted (this server fetches nothing)", param=param
        )
    try:
        return base64.b64decode(match[3], validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param}.{key}: the data URL is not valid base64", param=param) from None


def _store_reference(data: bytes, kind: str, config: ServeConfig) -> tuple[str, float | None]:
    """Decode an uploaded first frame or soundtrack (bounded by media's limits), then store it re-encoded
    as PNG / WAV: the worker never reads a user's bytes in a format we did not write. Returns the path
    relative to the data directory and, for audio, its length in seconds."""
    folder = config.data_path / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    param = "input_reference" if kind == "image" else "audio_reference"
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".upload.", delete=False) as tmp:
        tmp.write(data)
    try:
        if kind == "image":
            array = read_image(tmp.name)
            if min(array.shape[:2]) < 2:
                raise MediaError(f"image of {array.shape[1]}x{array.shape[0]} pixels; at least 2x2 is needed")
            name = f"inputs/{uuid.uuid4().hex}.png"
            save_image(config.data_path / name, array)
            return name, None
        audio, rate = read_audio(tmp.name, max_seconds=PIPELINE_MAX_SECONDS)
        name = f"inputs/{uuid.uuid4().hex}.wav"
        save_audio(config.data_path / name, audio, rate)
        return name, audio.shape[1] / rate
    except MediaError as exc:
        message = str(exc).replace(tmp.name, "the upload")
        raise APIError(400, f"{param}: {message}", param=param, code="invalid_media") from None
    finally:
        Path(tmp.name).unlink(missing_ok=True)


async def _read_create_body(request: Request) -> tuple[dict, dict[str, bytes]]:
    """The request's fields and uploaded files, from JSON or a form; 4xx for anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            raise APIError(400, "request body: not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, f"request body: must be a JSON object, got {type(body).__name__}")
        return body, {}
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise APIError(
            415,
            f"Content-Type: must be multipart/form-data or application/json, got {ctype or 'none'!r}",
            code="unsupported_media_type",
        )
    try:
        form = await request.form(max_files=2, max_fields=32)
    except BodyTooLarge:
        raise
    except Exception as exc:  # multipart syntax errors arrive under several exception types
        raise APIError(400, f"request body: not a readable form ({exc})", code="invalid_form") from None
    fields, files = {}, {}
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            raise APIError(400, f"{key}: given {len(values)} times; give it once", param=key)
        value = values[0]
        if isinstance(value, UploadFile):
            if key not in ("input_reference", "audio_reference"):
                raise APIError(400, f"{key}: a file was uploaded where a value was expected", param=key)
            files[key] = await value.read()
        elif key in ("input_reference", "audio_reference"):
            raise APIError(400, f"{key}: must be a file part (an image / a sound), got a plain field", param=key)
        else:
            fields[key] = value
    await form.close()
    return fields, files


# ------------------------------------------------------------------------------------------ app


def create_app(config: ServeConfig | None = None, **overrides) -> FastAPI:
    """The FastAPI app. Starting it (uvicorn, or `with TestClient(app)`) recovers interrupted jobs,
    loads the model once per worker and starts the workers; stopping it stops them."""
    config = config or ServeConfig(**overrides)
    check_model_dir(config.model)
    config.data_path.mkdir(parents=True, exist_ok=True)
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="HappyHorse",
        version="0.1.0",
        summary="Joint video + audio generation, shaped like OpenAI's Videos API.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_bytes=config.max_body_bytes, counters=service.http_counts)

    accepted = (*config.api_keys, *((config.admin_key,) if config.admin_key else ()))

    def client_id(request: Request) -> str:
        """Who is asking: the hash of the bearer token, else the peer address. With API keys configured,
        a missing or unknown token is refused."""
        token = _token(request)
        if config.api_keys and not _matches(token, accepted):
            raise APIError(
                401,
                "Authorization: a valid bearer token is required (Authorization: Bearer KEY)",
                code="invalid_api_key",
            )
        if token is not None:
            return "key:" + hashlib.sha256(token.encode()).hexdigest()[:24]
        return "ip:" + (request.client.host if request.client else "unknown")

    def require_admin(request: Request) -> None:
        if config.admin_key is None:
            raise APIError(
                403, "admin routes are disabled: start the server with an admin key (--admin-key)", code="disabled"
            )
        if not _matches(_token(request), (config.admin_key,)):
            raise APIError(401, "Authorization: the admin bearer token is required", code="invalid_api_key")

    def owner(client: str) -> str | None:
        """Whose jobs a client sees: its own when keys are configured, everyone's on an open server."""
        return client if config.api_keys else None

    def find(job_id: str, client: str) -> Job:
        job = service.store.get(job_id) if VIDEO_ID.match(job_id) else None
        if job is None or (owner(client) is not None and job.client != client):
            raise APIError(404, f"video_id: no video with id {job_id[:80]!r}", param="video_id", code="not_found")
        return job

    def page(client: str | None, after: str | None, limit: int, order: str) -> tuple[list[Job], bool]:
        try:
            if after is not None and not VIDEO_ID.match(after):
                raise KeyError(after)
            return service.store.page(client=client, after=after, limit=limit, order=order)
        except KeyError:
            raise APIError(400, f"after: no video with id {after[:80]!r}", param="after", code="not_found") from None

    def model_info() -> ModelInfo:
        if service.model is None:
            raise APIError(409, "the server is still starting: the model is not loaded yet", code="not_ready")
        return service.model

    # -------------------------------------------------------------------------------------- videos

    @app.post("/v1/videos", tags=["videos"], openapi_extra=_create_request_schema())
    async def create_video(request: Request, client: str = Depends(client_id)) -> JSONResponse:
        """Queue a video job; poll GET /v1/videos/{id} until `completed`, then download its content."""
        model = model_info()
        fields, files = await _read_create_body(request)
        try:
            params = VideoCreateParams.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            if first["type"] == "extra_forbidden":
                raise APIError(400, f"{param}: unknown parameter", param=param, code="unknown_parameter") from None
            raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from None
        _check_params(params, model, config)
        width, height = _parse_size(params.size, model, config)
        seconds = _parse_seconds(params.seconds, config)
        image = files.get("input_reference") or _data_url(params.input_reference, "image_url", "input_reference")
        sound = files.get("audio_reference") or _data_url(params.audio_reference, "audio_url", "audio_reference")
        if "input_reference" in files and not files["input_reference"]:
            raise APIError(400, "input_reference: the upload is empty", param="input_reference")
        if "audio_reference" in files and not files["audio_reference"]:
            raise APIError(400, "audio_reference: the upload is empty", param="audio_reference")
        await run_in_threadpool(_admit, client)  # refuse early, before decoding uploads
        job_params = {
            "seed": params.seed or 0,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
            "width": width,
            "height": height,
            "mode": "T" + ("I" if image else "") + ("A" if sound else "") + "2V",
        }

        def admit_and_create() -> Job:
            with service.admission:
                _admit(client)
                return service.store.create(
                    client=client,
                    model=model.id,
                    prompt=params.prompt,
                    params=job_params,
                    seconds=format_seconds(job_params["seconds"]),
                    size=f"{width}x{height}",
                )

        try:
            if image:
                job_params["image"], _ = await run_in_threadpool(_store_reference, image, "image", config)
            if sound:
                job_params["audio"], length = await run_in_threadpool(_store_reference, sound, "audio", config)
                if seconds is None:
                    seconds = min(max(length, config.min_seconds), config.max_seconds)
            job_params["seconds"] = seconds if seconds is not None else model.seconds
            job = await run_in_threadpool(admit_and_create)
        except APIError:  # the stored references of a refused request go too
            for key in ("image", "audio"):
                if job_params.get(key):
                    (config.data_path / job_params[key]).unlink(missing_ok=True)
            raise
        service.wake.set()
        return JSONResponse(video_object(job, config), headers={"openai-poll-after-ms": str(POLL_AFTER_MS)})

    def _admit(client: str) -> None:
        queued = service.store.count(status=("queued",))
        if queued >= config.max_queued:
            raise APIError(
                429,
                f"the queue is full ({queued} jobs waiting, limit {config.max_queued}); retry later",
                code="queue_full",
            )
        mine = service.store.count(status=ACTIVE, client=client)
        if mine >= config.max_jobs_per_client:
            raise APIError(
                429,
                f"this client has {mine} unfinished jobs, the limit is {config.max_jobs_per_client}; "
                "wait for one to finish",
                code="too_many_concurrent_jobs",
            )

    @app.get("/v1/videos", tags=["videos"])
    def list_videos(
        client: str = Depends(client_id),
        after: str | None = Query(None, max_length=200, description="Id of the last video of the previous page."),
        limit: int = Query(20, ge=1, le=config.page_limit, description="Videos per page."),
        order: Literal["asc", "desc"] = Query("desc", description="By creation time."),
    ) -> dict:
        """Videos, newest first by default; page on with `after` = the previous page's `last_id`."""
        jobs, more = page(owner(client), after, limit, order)
        data = [video_object(job, config) for job in jobs]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    @app.get("/v1/videos/{video_id}", tags=["videos"])
    def retrieve_video(video_id: str, client: str = Depends(client_id)) -> JSONResponse:
        job = find(video_id, client)
        headers = {"openai-poll-after-ms": str(POLL_AFTER_MS)} if job.status in ACTIVE else None
        return JSONResponse(video_object(job, config), headers=headers)

    @app.get(
        "/v1/videos/{video_id}/content",
        tags=["videos"],
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}, "image/png": {}}}},
    )
    def download_content(
        video_id: str,
        client: str = Depends(client_id),
        variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
    ):
        """The MP4 (H.264 + AAC), or a PNG of the first frame (thumbnail) or of 16 frames (spritesheet)."""
        job = find(video_id, client)
        if job.status != "completed":
            raise APIError(
                409, f"video_id: {job.id} is {job.status}; content exists once it is completed", code="not_ready"
            )
        key, media_type, suffix = CONTENT[variant]
        path = output_paths(config.data_path, job.id)[key]
        if not path.is_file():
            raise APIError(404, f"variant: the {variant} of {job.id} is missing on disk", param="variant")
        return FileResponse(path, media_type=media_type, filename=f"{job.id}.{suffix}")

    @app.delete("/v1/videos/{video_id}", tags=["videos"])
    def delete_video(video_id: str, client: str = Depends(client_id)) -> dict:
        """Remove a job and its files; a queued job never runs, a running one stops at its next step."""
        job = find(video_id, client)
        service.store.delete(job.id)
        remove_outputs(config.data_path, job)
        return {"id": job.id, "object": "video.deleted", "deleted": True}

    # -------------------------------------------------------------------------------------- models

    def model_object() -> dict:
        model = model_info()
        defaults = model.model_dump()
        return {"id": model.id, "object": "model", "created": 0, "owned_by": "happyhorse", "defaults": defaults}

    @app.get("/v1/models", tags=["models"])
    def list_models(_client: str = Depends(client_id)) -> dict:
        return {"object": "list", "data": [model_object()]}

    @app.get("/v1/models/{model_id}", tags=["models"])
    def retrieve_model(model_id: str, _client: str = Depends(client_id)) -> dict:
        if model_id != model_info().id:
            raise APIError(404, f"model_id: no model {model_id[:80]!r}", param="model_id", code="not_found")
        return model_object()

    # -------------------------------------------------------------------------------------- admin

    @app.get("/v1/admin/jobs", tags=["admin"], dependencies=[Depends(require_admin)])
    def admin_jobs(
        after: str | None = Query(None, max_length=200),
        limit: int = Query(100, ge=1, le=1000),
        order: Literal["asc", "desc"] = Query("desc"),
    ) -> dict:
        """Every client's jobs, with the client (a token hash or an address) and the attempt count."""
        jobs, more = page(None, after, limit, order)
        data = [{**video_object(j, config), "client": j.client, "attempts": j.attempts} for j in jobs]
        return {"object": "list", "data": data, "has_more": more}

    @app.get("/v1/admin/costs", tags=["admin"], dependencies=[Depends(require_admin)])
    def admin_costs() -> dict:
        """Compute seconds and price over finished jobs, per model: the cost side of cost-to-quality."""
        return {
            **service.store.totals(),
            "currency": config.currency,
            "price_per_hour": config.price_per_hour,
        }

    @app.post("/v1/admin/videos/{video_id}/retry", tags=["admin"], dependencies=[Depends(require_admin)])
    def admin_retry(video_id: str) -> dict:
        """Queue a failed job again (its attempts count on)."""
        job = service.store.requeue(video_id) if VIDEO_ID.match(video_id) else None
        if job is None:
            raise APIError(404, f"video_id: no failed video with id {video_id[:80]!r}", param="video_id")
        service.wake.set()
        return video_object(job, config)

    # -------------------------------------------------------------------------------------- operations

    @app.get("/health", tags=["operations"])
    def health() -> JSONResponse:
        alive = sum(w.is_alive() for w in service.workers)
        ok = service.model is not None and alive == len(service.workers)
        loaded = next((w.pipe for w in service.workers if w.pipe is not None), None)
        body = {
            "status": "ok" if ok else "degraded",
            "model": service.model.id if service.model else None,
            "device": str(loaded.device) if loaded else None,  # where the workers compute, once loaded
            "dtype": dtype_name(loaded.dtype) if loaded else None,
            "workers": len(service.workers),
            "workers_alive": alive,
            "jobs": service.store.counts_by_status(),
            "recovered_at_start": service.recovered,
            "arena": service.arena,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus text format."""
        lines = ["# TYPE happyhorse_jobs gauge"]
        lines += [f'happyhorse_jobs{{status="{s}"}} {n}' for s, n in service.store.counts_by_status().items()]
        totals = service.store.totals()
        lines += [
            "# TYPE happyhorse_queue_capacity gauge",
            f"happyhorse_queue_capacity {config.max_queued}",
            "# TYPE happyhorse_workers_busy gauge",
            f"happyhorse_workers_busy {sum(w.current is not None for w in service.workers)}",
            "# TYPE happyhorse_compute_seconds_total counter",
            f"happyhorse_compute_seconds_total {totals['compute_seconds']:.6f}",
            "# TYPE happyhorse_price_total counter",
            f"happyhorse_price_total {totals['price']:.8f}",
            "# TYPE happyhorse_http_responses_total counter",
        ]
        lines += [f'happyhorse_http_responses_total{{class="{k}"}} {v}' for k, v in sorted(service.http_counts.items())]
        return "\n".join(lines) + "\n"

    # -------------------------------------------------------------------------------------- studio

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def studio() -> HTMLResponse:
        return HTMLResponse((STATIC / "studio.html").read_text())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    service.arena = include_arena(app, config.database_url)
    return app


def include_arena(app: FastAPI, db_url: str) -> str:
    """Mount the arena's routes (happyhorse.arena.web, issue 7) on the same app and database when that
    module exists; a broken arena is logged and left out rather than taking the video API down."""
    try:
        if not all(importlib.util.find_spec(name) for name in ("happyhorse.arena", "happyhorse.arena.web")):
            return "absent"
        from ..arena.web import create_router

        app.include_router(create_router(db_url))
    except Exception as exc:
        log.warning("arena routes left out: %s: %s", type(exc).__name__, exc)
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "mounted"
