"""What the routes share: the settings, the job store, the workers, the served model and its checks.

One `Service` lives on `app.state.service`; the routers reach it through `deps.service`.
"""

from __future__ import annotations

import logging
import threading
import time

from pydantic import BaseModel

from ..generate import load_pipeline
from .config import ServeConfig
from .errors import APIError
from .queue import SharedQueue, is_postgres
from .storage import open_storage
from .store import ACTIVE, Job, JobStore
from .worker import Worker, remove_outputs

log = logging.getLogger("happyhorse.serve")


class ModelInfo(BaseModel):
    id: str
    width: int
    height: int
    seconds: float
    fps: float
    patch: int  # width and height must be multiples of this


class Service:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.store = JobStore(config.database_url)
        self.storage = open_storage(config.storage_url, config.data_path)
        # PostgreSQL: jobs also go to the shared queue, for `happyhorse worker` processes anywhere
        self.queue = SharedQueue(config.database_url, self.store) if is_postgres(config.database_url) else None
        self.wake = threading.Event()
        self.workers = [Worker(self.store, self.storage, config, self.wake, k) for k in range(config.workers)]
        self.admission = threading.Lock()  # the queue bound and per-client cap are checked and taken at once
        self.pipe = None  # a loaded worker's pipeline: its checks are the request's value checks
        self.model: ModelInfo | None = None
        self.http_counts: dict[str, int] = {}
        self.recovered: dict[str, int] = {}
        self.arena: str = "absent"
        self.stopping = threading.Event()
        self.sweeper = threading.Thread(target=self._sweep, name="happyhorse-expiry", daemon=True)
        self.expired = 0

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.queue is None:  # one server per database: what it left in_progress was interrupted
            self.recovered = self.store.recover(self.config.max_attempts)
        if any(self.recovered.values()):
            log.warning("restart recovery: %s", self.recovered)
        if not self.workers:  # an API server only: the model is loaded for the requests' checks
            self.pipe = load_pipeline(self.config.model, self.config.device, self.config.dtype)
            self._describe(self.pipe)
            return self._start_sweeper()
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
        self.pipe = loaded[0].pipe
        self._describe(self.pipe)
        self.wake.set()
        self._start_sweeper()

    def _describe(self, pipe) -> None:
        self.model = ModelInfo(
            id=pipe.name,
            width=int(pipe.defaults["width"]),
            height=int(pipe.defaults["height"]),
            seconds=float(pipe.defaults["seconds"]),
            fps=float(pipe.defaults["fps"]),
            patch=int(max(pipe.video_codec.patch_h, pipe.video_codec.patch_w)),
        )

    def _start_sweeper(self) -> None:
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
        if self.queue is not None:
            self.queue.close()
        self.store.close()

    def expire(self, now: float | None = None) -> int:
        """Delete the jobs (rows and files) that finished more than keep_hours ago; returns how many."""
        if not self.config.keep_hours:
            return 0
        cutoff, count = (now or time.time()) - self.config.keep_hours * 3600, 0
        while jobs := self.store.finished_before(cutoff):
            for job in jobs:
                remove_outputs(self.storage, job)  # files first: a crash here leaves a row to retry
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

    # ------------------------------------------------------------------------------ what routes ask

    def model_info(self) -> ModelInfo:
        if self.model is None:
            raise APIError(409, "the server is still starting: the model is not loaded yet", code="not_ready")
        return self.model

    def owner(self, client: str) -> str | None:
        """Whose jobs a client sees: its own when keys are configured, everyone's on an open server."""
        return client if self.config.api_keys else None

    def find(self, job_id: str, client: str) -> Job:
        job = self.store.get(job_id) if JobStore.is_id(job_id) else None
        if job is None or (self.owner(client) is not None and job.client != client):
            raise APIError(404, f"video_id: no video with id {job_id[:80]!r}", param="video_id", code="not_found")
        return job

    def page(self, client: str | None, after: str | None, limit: int, order: str) -> tuple[list[Job], bool]:
        try:
            if after is not None and not JobStore.is_id(after):
                raise KeyError(after)
            return self.store.page(client=client, after=after, limit=limit, order=order)
        except KeyError:
            raise APIError(400, f"after: no video with id {after[:80]!r}", param="after", code="not_found") from None

    def admit(self, client: str) -> None:
        """Refuse a new job (429) when the queue is full or the client has its cap of unfinished jobs."""
        queued = self.store.count(status=("queued",))
        if queued >= self.config.max_queued:
            raise APIError(
                429,
                f"the queue is full ({queued} jobs waiting, limit {self.config.max_queued}); retry later",
                code="queue_full",
            )
        mine = self.store.count(status=ACTIVE, client=client)
        if mine >= self.config.max_jobs_per_client:
            raise APIError(
                429,
                f"this client has {mine} unfinished jobs, the limit is {self.config.max_jobs_per_client}; "
                "wait for one to finish",
                code="too_many_concurrent_jobs",
            )

    def admit_and_create(self, client: str, **job) -> Job:
        """Admission and the new row under one lock: two requests cannot both take the last place."""
        with self.admission:
            self.admit(client)
            created = self.store.create(client=client, **job)
        self.enqueue(created)
        return created

    def enqueue(self, job: Job) -> None:
        """Tell the workers a job is queued: this server's threads, or (an API server only) the shared
        queue's workers. A server with threads of its own defers nothing, so no task piles up unread;
        `happyhorse worker` processes still take its backlog (they defer queued jobs that have no task)."""
        if self.queue is not None and not self.workers:
            self.queue.defer(job.id, job.model, int(job.params.get("priority", 0)))
        self.wake.set()
