"""/health and /metrics: liveness for probes and Prometheus figures; open without a token."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from ...devices import dtype_name
from ..deps import service
from ..service import Service

router = APIRouter(tags=["operations"])


@router.get("/health")
def health(svc: Service = Depends(service)) -> JSONResponse:
    """200 when the model is loaded, every worker thread alive, and the database and the storage answer;
    503 otherwise (a balancer then sends requests elsewhere)."""
    alive = sum(w.is_alive() for w in svc.workers)
    database, storage = dependency_problems(svc)
    ok = svc.model is not None and alive == len(svc.workers) and not database and not storage
    loaded = svc.pipe
    body = {
        "status": "ok" if ok else "degraded",
        "model": svc.model.id if svc.model else None,
        "device": str(loaded.device) if loaded else None,  # where the workers compute, once loaded
        "dtype": dtype_name(loaded.dtype) if loaded else None,
        "workers": len(svc.workers),
        "workers_alive": alive,
        "database": database or "ok",
        "storage": storage or "ok",
        "jobs": svc.store.counts_by_status() if not database else None,
        "recovered_at_start": svc.recovered,
        "arena": svc.arena,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


def dependency_problems(svc: Service) -> tuple[str | None, str | None]:
    """(database problem, storage problem), each None when it answers."""
    from sqlalchemy import text

    database = storage = None
    try:
        with svc.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
        database = f"unavailable ({type(exc).__name__})"
    try:
        svc.storage.check()
    except Exception as exc:  # noqa: BLE001
        storage = f"unavailable ({exc})"
    return database, storage


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: Service = Depends(service)) -> str:
    """Prometheus text format."""
    lines = ["# TYPE happyhorse_jobs gauge"]
    lines += [f'happyhorse_jobs{{status="{s}"}} {n}' for s, n in svc.store.counts_by_status().items()]
    totals = svc.store.totals()
    lines += [
        "# TYPE happyhorse_queue_capacity gauge",
        f"happyhorse_queue_capacity {svc.config.max_queued}",
        "# TYPE happyhorse_workers_busy gauge",
        f"happyhorse_workers_busy {sum(w.current is not None for w in svc.workers)}",
        "# TYPE happyhorse_compute_seconds_total counter",
        f"happyhorse_compute_seconds_total {totals['compute_seconds']:.6f}",
        "# TYPE happyhorse_price_total counter",
        f"happyhorse_price_total {totals['price']:.8f}",
        "# TYPE happyhorse_http_responses_total counter",
    ]
    lines += [f'happyhorse_http_responses_total{{class="{k}"}} {v}' for k, v in sorted(svc.http_counts.items())]
    return "\n".join(lines) + "\n"
