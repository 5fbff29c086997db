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
    alive = sum(w.is_alive() for w in svc.workers)
    ok = svc.model is not None and alive == len(svc.workers)
    loaded = svc.pipe
    body = {
        "status": "ok" if ok else "degraded",
        "model": svc.model.id if svc.model else None,
        "device": str(loaded.device) if loaded else None,  # where the workers compute, once loaded
        "dtype": dtype_name(loaded.dtype) if loaded else None,
        "workers": len(svc.workers),
        "workers_alive": alive,
        "jobs": svc.store.counts_by_status(),
        "recovered_at_start": svc.recovered,
        "arena": svc.arena,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


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
