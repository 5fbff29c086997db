"""The job store: every video job as one row, through SQLAlchemy (SQLite file by default, PostgreSQL by URL).

The database is the queue: a job is `queued` until a worker claims it with a conditional UPDATE, so
jobs survive a restart and several workers (or processes on one PostgreSQL) never run the same job twice.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text, create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..database import create_tables

ACTIVE = ("queued", "in_progress")
VIDEO_ID = re.compile(r"^video_[0-9a-f]{32}$")  # the ids `create` makes; anything else is no video
STATUSES = ("queued", "in_progress", "completed", "failed")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "happyhorse_video_jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # queue and page order
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)  # hash of the bearer token, or the address
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSON)  # GenerateRequest's fields but the prompt, and the mode
    seconds: Mapped[str] = mapped_column(String(16))
    size: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    compute_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the generation's sidecar


@dataclass
class Job:
    """A detached snapshot of one row: safe to hand across threads."""

    seq: int
    id: str
    client: str
    model: str
    status: str
    progress: int
    prompt: str
    params: dict
    seconds: str
    size: str
    created_at: int
    started_at: float | None
    completed_at: int | None
    attempts: int
    error_code: str | None
    error_message: str | None
    compute_seconds: float | None
    price: float | None
    result: dict | None

    @classmethod
    def of(cls, row: JobRow) -> Job:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL (readers do not block the worker's writes) and a busy
    timeout, so concurrent requests wait for the lock instead of failing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # a database that is gone must answer in seconds (a 503), not after TCP's minutes
    return create_engine(url, pool_pre_ping=True, pool_timeout=5, connect_args={"connect_timeout": 3})


class JobStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        create_tables(self.engine, Base.metadata)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def is_id(text: str) -> bool:
        """Whether `text` has the form of a job id: anything else is answered without a query."""
        return bool(VIDEO_ID.match(text))

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ------------------------------------------------------------------------------ requests

    def create(self, *, client: str, model: str, prompt: str, params: dict, seconds: str, size: str) -> Job:
        row = JobRow(
            id=f"video_{uuid.uuid4().hex}",
            client=client,
            model=model,
            status="queued",
            progress=0,
            prompt=prompt,
            params=params,
            seconds=seconds,
            size=size,
            created_at=int(time.time()),
            attempts=0,
        )
        with self._session() as session, session.begin():
            session.add(row)
        return Job.of(row)

    def get(self, job_id: str) -> Job | None:
        with self._session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == job_id))
            return Job.of(row) if row is not None else None

    def page(self, *, client: str | None, after: str | None, limit: int, order: str) -> tuple[list[Job], bool]:
        """Jobs in creation order (`asc`) or newest first (`desc`), after the job `after`; and whether
        more follow. Raises KeyError if `after` names no job of this client."""
        with self._session() as session:
            query = select(JobRow)
            if client is not None:
                query = query.where(JobRow.client == client)
            if after is not None:
                anchor = session.scalar(query.where(JobRow.id == after))
                if anchor is None:
                    raise KeyError(after)
                query = query.where(JobRow.seq > anchor.seq if order == "asc" else JobRow.seq < anchor.seq)
            query = query.order_by(JobRow.seq.asc() if order == "asc" else JobRow.seq.desc()).limit(limit + 1)
            rows = list(session.scalars(query))
        return [Job.of(r) for r in rows[:limit]], len(rows) > limit

    def finished_before(self, cutoff: float, limit: int = 100) -> list[Job]:
        """Completed or failed jobs that finished before `cutoff` (Unix seconds), oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.status.in_(("completed", "failed")), JobRow.completed_at < cutoff)
                .order_by(JobRow.completed_at)
                .limit(limit)
            )
            return [Job.of(row) for row in rows]

    def delete(self, job_id: str) -> Job | None:
        with self._session() as session, session.begin():
            row = session.scalar(select(JobRow).where(JobRow.id == job_id))
            if row is None:
                return None
            session.delete(row)
            return Job.of(row)

    def count(self, *, status: tuple[str, ...], client: str | None = None, model: str | None = None) -> int:
        with self._session() as session:
            query = select(func.count()).select_from(JobRow).where(JobRow.status.in_(status))
            if client is not None:
                query = query.where(JobRow.client == client)
            if model is not None:
                query = query.where(JobRow.model == model)
            return int(session.scalar(query) or 0)

    def counts_by_status(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        return {status: 0 for status in STATUSES} | {status: int(n) for status, n in rows}

    def totals(self) -> dict[str, Any]:
        """Cost figures over finished jobs: what cost-to-quality reports divide by."""
        with self._session() as session:
            n, compute, price = session.execute(
                select(func.count(), func.sum(JobRow.compute_seconds), func.sum(JobRow.price)).where(
                    JobRow.status.in_(("completed", "failed"))
                )
            ).one()
            by_model = session.execute(
                select(JobRow.model, func.count(), func.sum(JobRow.compute_seconds), func.sum(JobRow.price))
                .where(JobRow.status == "completed")
                .group_by(JobRow.model)
            ).all()
        return {
            "finished_jobs": int(n or 0),
            "compute_seconds": float(compute or 0.0),
            "price": float(price or 0.0),
            "by_model": {
                m: {"completed_jobs": int(c), "compute_seconds": float(s or 0), "price": float(p or 0)}
                for m, c, s, p in by_model
            },
        }

    # ------------------------------------------------------------------------------ worker side

    def claim(self) -> Job | None:
        """Move the oldest queued job to in_progress and return it; None when the queue is empty."""
        while True:
            with self._session() as session, session.begin():
                job_id = session.scalar(
                    select(JobRow.id).where(JobRow.status == "queued").order_by(JobRow.seq).limit(1)
                )
                if job_id is None:
                    return None
                claimed = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == "queued")
                    .values(status="in_progress", progress=0, attempts=JobRow.attempts + 1, started_at=time.time())
                )
            if claimed.rowcount == 1:
                return self.get(job_id)

    def claim_id(self, job_id: str) -> Job | None:
        """Move this queued job to in_progress and return it; None when it is not queued (taken, deleted
        or finished): the shared queue's task for it then does nothing."""
        with self._session() as session, session.begin():
            claimed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(status="in_progress", progress=0, attempts=JobRow.attempts + 1, started_at=time.time())
            )
        return self.get(job_id) if claimed.rowcount == 1 else None

    def interrupted(self, job_id: str, max_attempts: int) -> bool:
        """A job whose worker stopped answering: back to queued (True) if it has started fewer than
        `max_attempts` times, else failed with the reason (False)."""
        with self._session() as session, session.begin():
            again = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "in_progress", JobRow.attempts < max_attempts)
                .values(status="queued", progress=0)
            ).rowcount
            if not again:
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == "in_progress")
                    .values(
                        status="failed",
                        completed_at=int(time.time()),
                        error_code="interrupted",
                        error_message=f"its worker stopped {max_attempts} time(s); it is not retried again",
                    )
                )
        return again == 1

    def set_progress(self, job_id: str, progress: int) -> bool:
        """Record progress; False when the job is gone (deleted), so the worker stops it."""
        with self._session() as session, session.begin():
            result = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "in_progress")
                .values(progress=max(0, min(99, int(progress))))
            )
        return result.rowcount == 1

    def finish(self, job_id: str, *, compute_seconds: float, price: float, result: dict | None = None, error=None):
        """Mark a job completed (error None) or failed (error = (code, message)), with its cost."""
        values = {"compute_seconds": compute_seconds, "price": price, "completed_at": int(time.time())}
        if error is None:
            values |= {"status": "completed", "progress": 100, "result": result}
        else:
            values |= {"status": "failed", "error_code": error[0], "error_message": error[1][:2000]}
        with self._session() as session, session.begin():
            done = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.status == "in_progress").values(**values)
            )
        return done.rowcount == 1

    def requeue(self, job_id: str) -> Job | None:
        """A failed job back to queued, its error cleared; None if there is no such failed job."""
        with self._session() as session, session.begin():
            done = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "failed")
                .values(status="queued", progress=0, error_code=None, error_message=None, completed_at=None)
            )
        return self.get(job_id) if done.rowcount == 1 else None

    def release(self, job_id: str) -> bool:
        """Put a job the server stopped on purpose back in the queue, its attempt not counted: only
        crashes (which leave it in_progress for `recover`) use up retries."""
        with self._session() as session, session.begin():
            released = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "in_progress")
                .values(status="queued", progress=0, attempts=JobRow.attempts - 1)
            ).rowcount
        return released == 1

    def recover(self, max_attempts: int) -> dict[str, int]:
        """After a restart: a job left in_progress was interrupted. It runs again if it has started fewer
        than `max_attempts` times, else it fails with the reason. Queued jobs stay queued. Returns counts.

        Run by one server per database at start-up: a second live server on the same database would
        take the first one's running jobs for interrupted ones."""
        with self._session() as session, session.begin():
            retried = session.execute(
                update(JobRow)
                .where(JobRow.status == "in_progress", JobRow.attempts < max_attempts)
                .values(status="queued", progress=0)
            ).rowcount
            failed = session.execute(
                update(JobRow)
                .where(JobRow.status == "in_progress")
                .values(
                    status="failed",
                    completed_at=int(time.time()),
                    error_code="interrupted",
                    error_message=(
                        f"the server stopped while this job ran, {max_attempts} time(s); it is not retried again"
                    ),
                )
            ).rowcount
            queued = session.scalar(select(func.count()).select_from(JobRow).where(JobRow.status == "queued"))
        return {"retried": int(retried), "failed": int(failed), "queued": int(queued or 0)}
