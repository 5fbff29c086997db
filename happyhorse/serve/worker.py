"""Generation workers: threads that take queued jobs from the store and run the pipeline.

Generation runs here, never on the event loop, so requests are answered while a clip is sampled.
Each worker loads the model once and keeps it; torch releases the GIL inside its kernels.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy.exc import DBAPIError

from ..generate import load_pipeline, run_generate
from ..media import MediaError, read_video, save_image
from .config import ServeConfig
from .request import job_request
from .storage import Storage, video_keys
from .store import Job, JobStore

log = logging.getLogger("happyhorse.serve")
SAMPLING_SHARE = 95  # progress % reached when the last sampling step ends; decoding and writing take the rest
STORE_RETRY_S = 1.0  # back-off after a store error (the job it held is retried by restart recovery)
STORE_PATIENCE_S = 300.0  # how long a finished job waits for the database to come back


class JobCancelled(Exception):
    """Raised from the progress callback when the job was deleted while it ran."""


def remove_outputs(storage: Storage, job: Job, keep_inputs: bool = False) -> None:
    """A job's outputs (and, unless kept, its uploaded inputs) from the storage."""
    keys = list(video_keys(job.id).values())
    inputs = () if keep_inputs else ("image", "audio")
    keys += [job.params[k] for k in inputs if job.params.get(k)]
    storage.delete(keys)


def spritesheet(frames: np.ndarray, columns: int = 4, count: int = 16) -> np.ndarray:
    """Up to `count` evenly spaced frames tiled row-major: uint8 [T, H, W, 3] -> [rows*H, columns*W, 3]."""
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    rows = math.ceil(len(picks) / columns)
    h, w = frames.shape[1:3]
    sheet = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for k, index in enumerate(picks):
        r, c = divmod(k, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frames[index]
    return sheet


class Worker(threading.Thread):
    def __init__(self, store: JobStore, storage: Storage, config: ServeConfig, wake: threading.Event, index: int = 0):
        super().__init__(name=f"happyhorse-worker-{index}", daemon=True)
        self.store, self.storage, self.config, self.wake = store, storage, config, wake
        self.stopping = threading.Event()
        self.ready = threading.Event()  # set once the model load ended, loaded or not
        self.go = threading.Event()  # set by the service once every worker's load is known
        self.pipe = None
        self.load_error: str | None = None
        self.current: str | None = None

    def load(self):
        try:
            self.pipe = load_pipeline(self.config.model, self.config.device, self.config.dtype)
        except Exception as exc:  # a broken model directory: every job fails with this reason
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model could not be loaded: %s", self.load_error)
        finally:
            self.ready.set()

    def run(self):
        self.load()
        self.go.wait()  # a worker whose load failed is stopped here, before it claims a job
        while not self.stopping.is_set():
            try:
                job = self.store.claim()
                if job is None:
                    self.wake.wait(timeout=0.5)
                    self.wake.clear()
                    continue
                self.current = job.id
                try:
                    self.run_job(job)
                finally:
                    self.current = None
            except Exception:  # a database error (locked, connection lost) must not end the worker for good
                log.exception("worker: store error; retrying in %.1f s", STORE_RETRY_S)
                self.stopping.wait(STORE_RETRY_S)

    def durable(self, call, *args, **kwargs):
        """`call` retried while the database is away (a restart, a failover), for up to STORE_PATIENCE_S:
        a finished clip is recorded when it is back, not lost with its job left running."""
        deadline = time.monotonic() + STORE_PATIENCE_S
        while True:
            try:
                return call(*args, **kwargs)
            except DBAPIError:
                if time.monotonic() > deadline:
                    raise
                log.warning("the database is away; %s retried in %.1f s", call.__name__, STORE_RETRY_S)
                time.sleep(STORE_RETRY_S)

    def stop(self):
        self.stopping.set()
        self.go.set()
        self.wake.set()

    def run_job(self, job: Job) -> None:
        """Generate into a scratch folder of this worker's, then put every output into the storage (each
        whole or absent) before the job is marked completed."""
        with tempfile.TemporaryDirectory(prefix=f"{job.id}.", dir=self.scratch()) as scratch:
            self._run_job(job, Path(scratch))

    def scratch(self) -> Path:
        folder = self.config.data_path / "work"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _run_job(self, job: Job, scratch: Path) -> None:
        start = time.perf_counter()
        keys = video_keys(job.id)
        paths = {kind: scratch / Path(key).name for kind, key in keys.items()}

        def on_step(i: int, n: int) -> None:
            if self.stopping.is_set():
                raise JobCancelled(job.id)
            try:
                if not self.store.set_progress(job.id, SAMPLING_SHARE * i // max(n, 1)):
                    raise JobCancelled(job.id)
            except DBAPIError:  # the database away for a moment: progress is not worth stopping the clip for
                log.warning("job %s: progress not recorded (the database is away)", job.id)

        error, result = None, None
        try:
            if self.pipe is None:
                raise RuntimeError(f"the model could not be loaded: {self.load_error}")
            inputs = {k: self.storage.fetch(job.params[k], scratch / Path(job.params[k]).name)
                      for k in ("image", "audio") if job.params.get(k)}  # fmt: skip
            request = job_request(job, inputs)
            result = run_generate(self.pipe, request, paths["video"], callback=on_step)
            clip = read_video(paths["video"])
            save_image(paths["thumbnail"], clip.frames[0])
            save_image(paths["spritesheet"], spritesheet(clip.frames))
            for kind in ("thumbnail", "spritesheet", "sidecar", "video"):  # the MP4 last: it marks the set whole
                self.storage.put_file(keys[kind], paths[kind])
        except JobCancelled:
            if self.stopping.is_set():  # a clean shutdown: queued again, no retry used
                remove_outputs(self.storage, job, keep_inputs=True)
                self.durable(self.store.release, job.id)
                return
            remove_outputs(self.storage, job)
            return
        except (ValueError, MediaError) as exc:
            error = ("invalid_request", f"{exc}")
        except Exception as exc:
            log.exception("job %s failed", job.id)
            error = ("generation_failed", f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - start
        price = round(seconds / 3600 * self.config.price_per_hour, 8)
        if error is not None:
            with contextlib.suppress(Exception):  # a storage that is gone: the outputs were never all put
                self.storage.delete(list(keys.values()))
        done = self.durable(self.store.finish, job.id, compute_seconds=seconds, price=price, result=result, error=error)
        if not done:
            remove_outputs(self.storage, job)  # deleted while it was being written
