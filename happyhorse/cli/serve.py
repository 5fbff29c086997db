"""`happyhorse serve`: the HTTP API and web pages."""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from .common import DEVICE_HELP, DTYPE_HELP, app, check_device, console, require_extra


def _check_model_and_device(model: Path | None, device: str, dtype: str) -> None:
    """Refuse, by flag, a missing model directory or a device the machine lacks, before anything loads."""
    from ..serve import check_model_dir

    try:
        check_model_dir(model)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    check_device(device, dtype)


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    model: Path = typer.Option(None, help="Model directory (default: the embedded default model)."),
    db: str = typer.Option(None, help="SQLAlchemy URL of the job store (default: sqlite:///DATA/jobs.sqlite)."),
    data: Path = typer.Option(Path("serve_data"), help="The server's folder (SQLite jobs, scratch; clips by default)."),
    storage: str = typer.Option(
        None, help="Where clips and uploads are kept: a directory or s3://BUCKET/PREFIX (default: --data)."
    ),
    workers: int = typer.Option(
        1, min=0, max=64, help="Generation threads, one model load each; 0 (PostgreSQL): an API server only."
    ),
    api_key: str = typer.Option(
        None, envvar="HAPPYHORSE_API_KEYS", help="Comma-separated bearer tokens required on /v1 (default: open)."
    ),
    admin_key: str = typer.Option(
        None, envvar="HAPPYHORSE_ADMIN_KEY", help="Bearer token for /v1/admin (default: admin routes off)."
    ),
    price_per_hour: float = typer.Option(2.0, min=0, help="Price of one hour of worker compute, for job costs."),
    max_seconds: float = typer.Option(15.0, min=0.1, max=60, help="Longest clip a request may ask for."),
    max_jobs_per_client: int = typer.Option(8, min=1, help="Unfinished jobs one client may have."),
    max_queued: int = typer.Option(256, min=1, help="Jobs waiting in all; beyond it requests get 429."),
    keep_hours: float = typer.Option(
        None, min=0.001, help="Delete finished jobs and their files this many hours after (default: keep all)."
    ),
    trusted_proxies: str = typer.Option(
        "127.0.0.1",
        envvar="FORWARDED_ALLOW_IPS",
        help="Comma-separated proxy addresses whose X-Forwarded-For names the client (per-client caps, limits).",
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Serve the OpenAI-shaped video API (/v1/videos), the studio page (/) and /health, /metrics."""
    require_extra("serve")
    import uvicorn
    from sqlalchemy.engine import make_url

    from ..serve import ServeConfig, create_app

    _check_model_and_device(model, device, dtype)
    keys = tuple(k.strip() for k in (api_key or "").split(",") if k.strip())
    try:
        config = ServeConfig(
            model=model,
            device=device,
            dtype=dtype,
            data_dir=data,
            db_url=db,
            storage_url=storage,
            workers=workers,
            api_keys=keys,
            admin_key=admin_key or None,
            price_per_hour=price_per_hour,
            max_seconds=max_seconds,
            max_jobs_per_client=max_jobs_per_client,
            max_queued=max_queued,
            keep_hours=keep_hours,
        )
        application = create_app(config)
    except ValueError as exc:
        hint = "--storage" if str(exc).startswith("storage:") else None
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    except Exception as exc:  # e.g. an unreachable or malformed --db URL
        raise typer.BadParameter(f"{type(exc).__name__}: {exc}", param_hint="--db") from None
    shown = make_url(config.database_url).render_as_string(hide_password=True)
    console.print(f"serving {config.model_dir} on http://{host}:{port}/ (jobs in {shown})")
    uvicorn.run(
        application, host=host, port=port, log_level="info", proxy_headers=True, forwarded_allow_ips=trusted_proxies
    )


@app.command("worker")
def worker_command(
    db: str = typer.Option(..., help="The PostgreSQL URL the API servers use (postgresql+psycopg://...)."),
    model: Path = typer.Option(None, help="Model directory (default: the embedded default model)."),
    storage: str = typer.Option(None, help="Where clips and uploads are kept: a directory or s3://BUCKET/PREFIX."),
    data: Path = typer.Option(Path("serve_data"), help="Scratch folder (and the storage when --storage is unset)."),
    concurrency: int = typer.Option(1, min=1, max=16, help="Jobs at once (each shares the one model load)."),
    max_attempts: int = typer.Option(2, min=1, max=10, help="Starts a job may take when its workers die."),
    port: int = typer.Option(0, min=0, max=65535, help="Serve this worker's /health and /metrics here (0: none)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Generate the jobs of one model from the shared queue (procrastinate on PostgreSQL), on any machine:
    loads the model once; SIGTERM finishes the job in hand; a worker that cannot load its model takes no
    job (with --port it stays up, failing /health; else it exits with 3)."""
    require_extra("serve")
    from ..serve import ServeConfig
    from ..serve.queue import is_postgres, run_worker
    from ..serve.storage import open_storage
    from ..serve.store import JobStore
    from ..serve.worker import Worker

    _check_model_and_device(model, device, dtype)
    try:
        if not is_postgres(db):
            raise ValueError(f"a shared queue needs PostgreSQL (postgresql+psycopg://...), got {db.split(':')[0]}")
        config = ServeConfig(model=model, device=device, dtype=dtype, data_dir=data, db_url=db, storage_url=storage)
        store = JobStore(db)
        files = open_storage(storage, data)
    except Exception as exc:  # a malformed or unreachable URL: named, not a traceback
        raise typer.BadParameter(f"{exc}", param_hint="--db") from None
    worker = Worker(store, files, config, threading.Event())
    worker.load()
    if worker.pipe is None:
        console.print(f"worker: the model could not be loaded, so no job is taken: {worker.load_error}", markup=False)
        if port:  # stay up, failing its health check, so that the orchestrator sees why
            import uvicorn

            from ..serve.queue import WorkerStats, worker_http

            uvicorn.run(worker_http(store, worker, str(model), WorkerStats()), port=port, log_level="warning")
        raise typer.Exit(3)
    from sqlalchemy.engine import make_url

    console.print(f"worker: {worker.pipe.name} from the queue in {make_url(db).render_as_string(hide_password=True)}")
    run_worker(db, store, worker, worker.pipe.name, max_attempts, concurrency, port)
