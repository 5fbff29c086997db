"""`happyhorse serve`: the HTTP API and web pages."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE_HELP, DTYPE_HELP, app, check_device, console, require_extra


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
    workers: int = typer.Option(1, min=1, max=64, help="Generation threads, one model load each."),
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

    from ..serve import ServeConfig, check_model_dir, create_app

    try:
        check_model_dir(model)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    check_device(device, dtype)
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
