"""The HTTP service: OpenAI's Videos API shape over the HappyHorse pipeline, persistent jobs, a web studio.

Routes (an official `openai` client works unchanged against /v1), one router per resource in `routes/`:
  POST   /v1/videos                  create a job (multipart, as the openai client sends, or JSON)
  GET    /v1/videos                  list jobs, newest first, cursor-paginated (after, limit, order)
  GET    /v1/videos/{id}             one job: status, progress %, cost, error
  GET    /v1/videos/{id}/content     the MP4 (variant=video), or a PNG thumbnail / spritesheet
  DELETE /v1/videos/{id}             remove a job and its files (a running one stops at its next step)
  GET    /v1/models                  the served model
  GET    /v1/admin/jobs, /v1/admin/costs, POST /v1/admin/videos/{id}/retry   admin token only
  GET    /health, /metrics           liveness and Prometheus figures
  GET    /                           the studio page
  /v1/arena/...                      the arena's battles, votes and boards (happyhorse.arena.web), same database
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from .config import ServeConfig, check_model_dir
from .errors import RequestGuard, install_error_handlers
from .routes import ROUTERS
from .routes.studio import STATIC
from .service import Service

log = logging.getLogger("happyhorse.serve")


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
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    service.arena = include_arena(app, config.database_url)
    return app


def include_arena(app: FastAPI, db_url: str) -> str:
    """Mount the arena's routes (happyhorse.arena.web) on the same app and database when that module
    exists; a broken arena is logged and left out rather than taking the video API down."""
    try:
        if not all(importlib.util.find_spec(name) for name in ("happyhorse.arena", "happyhorse.arena.web")):
            return "absent"
        from ..arena.web import create_router

        app.include_router(create_router(db_url))
    except Exception as exc:
        log.warning("arena routes left out: %s: %s", type(exc).__name__, exc)
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "mounted"
