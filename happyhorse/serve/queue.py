"""The job queue of a shared deployment: procrastinate on PostgreSQL, with `happyhorse worker` processes.

The job table stays the record the API shows (status, progress, result). procrastinate decides who runs
what: an API server defers one `happyhorse.generate` task per video on the queue of its model, so only
workers that serve that model take it, at the request's priority. Workers take tasks with PostgreSQL's
row locks and send heartbeats; a worker whose heartbeat stops (kill -9, machine gone) has its task
re-queued by any other worker after STALLED_S seconds, until the job has started `max_attempts` times.
A job runs to completion once: its row is claimed queued -> in_progress by a conditional UPDATE, and a
task that finds it taken, deleted or finished does nothing.

Why procrastinate: it is a maintained PostgreSQL task queue (locks, retries, priorities, queues,
cancellation, worker heartbeats and stalled-job detection), so none of that is written here again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url

from ..database import LOCK_KEY
from .store import JobStore

log = logging.getLogger("happyhorse.serve")
TASK = "happyhorse.generate"
HEARTBEAT_S = 2.0  # a worker's heartbeat
STALLED_S = 10.0  # a worker silent this long is gone: its tasks run again elsewhere
ORPHAN_S = 30.0  # a queued job with no task this long (its defer failed mid-outage) is deferred again


def conninfo(db_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (postgresql+psycopg://... works)."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(
            f"db: a shared queue needs PostgreSQL (postgresql+psycopg://...), got {url.get_backend_name()}"
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def is_postgres(db_url: str) -> bool:
    return make_url(db_url).get_backend_name() == "postgresql"


def queue_name(model_id: str) -> str:
    """The queue of one model: its workers listen there and nowhere else."""
    return "model." + re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)[:60]


def make_app(db_url: str):
    """A procrastinate App on the database, with the generation task registered."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(db_url)))

    @app.task(name=TASK, pass_context=True)
    def generate(context, job_id: str) -> None:
        context.additional_context["runner"](job_id)

    return app


def apply_schema(app, store: JobStore) -> None:
    """procrastinate's tables, created once under the schema lock however many processes start together."""
    with store.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        if conn.scalar(text("SELECT to_regclass('procrastinate_jobs')")) is None:
            cursor = conn.connection.cursor()  # the DBAPI's own: the schema's '%' are not placeholders
            cursor.execute(app.schema_manager.get_schema())
            cursor.close()


class SharedQueue:
    """What an API server does with the queue: defer a job, cancel one."""

    def __init__(self, db_url: str, store: JobStore):
        self.app = make_app(db_url)
        apply_schema(self.app, store)
        self.app.open()

    def defer(self, job_id: str, model_id: str, priority: int = 0) -> None:
        self.app.configure_task(TASK, queue=queue_name(model_id), priority=priority).defer(job_id=job_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


class WorkerStats:
    """What a worker process reports on its /metrics: jobs by outcome and their seconds."""

    def __init__(self):
        self.outcomes: dict[str, int] = {"completed": 0, "failed": 0, "skipped": 0}
        self.seconds = 0.0
        self.lock = threading.Lock()

    def add(self, outcome: str, seconds: float = 0.0) -> None:
        with self.lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.seconds += seconds


def worker_http(store: JobStore, worker, model_id: str, stats: WorkerStats):
    """The worker process's own /health (model loaded, database and storage answering: 200, else 503)
    and /metrics (Prometheus: jobs by outcome, seconds, busy, this model's queue depth)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse

    app = FastAPI(title="happyhorse worker")

    @app.get("/health")
    def health() -> JSONResponse:
        problems = {}
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
            problems["database"] = f"unavailable ({type(exc).__name__})"
        try:
            worker.storage.check()
        except Exception as exc:  # noqa: BLE001
            problems["storage"] = f"unavailable ({exc})"
        if worker.pipe is None:
            problems["model"] = f"not loaded ({worker.load_error})"
        ok = not problems
        body = {"status": "ok" if ok else "degraded", "model": model_id, "busy": worker.current, **problems}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        with stats.lock:
            outcomes, seconds = dict(stats.outcomes), stats.seconds
        try:
            depth = str(store.count(status=("queued",), model=model_id))
        except Exception:  # noqa: BLE001 - the database away: the gauge is absent, the rest still reads
            depth = "NaN"
        lines = ["# TYPE happyhorse_worker_jobs_total counter"]
        lines += [f'happyhorse_worker_jobs_total{{outcome="{k}"}} {v}' for k, v in sorted(outcomes.items())]
        lines += [
            "# TYPE happyhorse_worker_job_seconds_total counter",
            f"happyhorse_worker_job_seconds_total {seconds:.6f}",
            "# TYPE happyhorse_worker_busy gauge",
            f"happyhorse_worker_busy {int(worker.current is not None)}",
            "# TYPE happyhorse_queue_depth gauge",
            f'happyhorse_queue_depth{{model="{model_id}"}} {depth}',
        ]
        return "\n".join(lines) + "\n"

    return app


def run_worker(
    db_url: str, store: JobStore, worker, model_id: str, max_attempts: int, concurrency: int = 1, port: int = 0
) -> None:
    """Take this model's tasks until SIGINT/SIGTERM (the job in hand finishes first), re-queueing the tasks
    of stalled workers meanwhile; with `port`, serve /health and /metrics there. `worker` is a loaded
    serve.worker.Worker (its thread not started)."""
    app = make_app(db_url)
    apply_schema(app, store)
    stats = WorkerStats()
    if port:
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(worker_http(store, worker, model_id, stats), port=port, log_level="warning")
        )
        server.install_signal_handlers = lambda: None  # procrastinate's worker takes SIGTERM
        threading.Thread(target=server.run, name="happyhorse-worker-http", daemon=True).start()

    in_hand: set[str] = set()  # this process's jobs: never "stalled", also while it stops heartbeating to shut down

    def run(job_id: str) -> None:
        job = worker.durable(store.claim_id, job_id)
        if job is None:  # deleted, finished, or taken: nothing to do
            stats.add("skipped")
            return
        worker.current = job.id
        in_hand.add(job.id)
        start = time.perf_counter()
        try:
            worker.run_job(job)
        finally:
            worker.current = None
            in_hand.discard(job.id)
            final = store.get(job.id)
            stats.add(final.status if final and final.status in ("completed", "failed") else "skipped",
                      time.perf_counter() - start)  # fmt: skip

    orphans = text(
        "SELECT j.id FROM happyhorse_video_jobs j WHERE j.status = 'queued' AND j.model = :model "
        "AND j.created_at < :before AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p "
        "WHERE p.args->>'job_id' = j.id AND p.status IN ('todo', 'doing'))"
    )

    async def requeue_stalled() -> None:
        while True:
            await asyncio.sleep(STALLED_S / 2)
            try:  # a job whose task was lost (its server defer failed, its task failed): deferred again
                with store.engine.connect() as conn:
                    lost = [
                        row[0] for row in conn.execute(orphans, {"model": model_id, "before": time.time() - ORPHAN_S})
                    ]
                for job_id in lost:
                    await app.configure_task(TASK, queue=queue_name(model_id)).defer_async(job_id=job_id)
                    log.warning("job %s had no task; deferred again", job_id)
            except Exception:  # the database away: the next round tries again
                log.exception("orphan check failed")
            try:
                stalled = await app.job_manager.get_stalled_jobs(task_name=TASK, seconds_since_heartbeat=STALLED_S)
                for job in stalled:
                    job_id = job.task_kwargs.get("job_id")
                    if job_id in in_hand:
                        continue
                    if store.interrupted(job_id, max_attempts):  # back to queued: run it again
                        await app.job_manager.retry_job(job)
                    else:  # failed for good (or gone): the task ends
                        await app.job_manager.finish_job(job, status=_failed(), delete_job=False)
                    now = store.get(job_id)
                    log.warning("worker of job %s stopped answering; %s", job_id, now.status if now else "deleted")
            except Exception:  # the database away: the next round tries again
                log.exception("stalled-job check failed")

    async def main() -> None:
        async with app.open_async():
            reaper = asyncio.create_task(requeue_stalled())
            try:
                await app.run_worker_async(
                    queues=[queue_name(model_id)],
                    concurrency=concurrency,
                    additional_context={"runner": run},
                    update_heartbeat_interval=HEARTBEAT_S,
                    stalled_worker_timeout=STALLED_S,
                    shutdown_graceful_timeout=None,  # the job in hand finishes
                    install_signal_handlers=True,
                )
            finally:
                reaper.cancel()

    asyncio.run(main())


def _failed():
    from procrastinate.jobs import Status

    return Status.FAILED


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (drills and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
