"""Settings of one server: where jobs and clips live, what a request may ask for, who may ask."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..components import DEFAULT_MODEL_DIR
from ..pipeline import MAX_PROMPT_CHARS


@dataclass
class ServeConfig:
    """Everything `create_app` needs; `happyhorse serve` fills it from its options and environment.

    Limits exist so that one request cannot take the machine: the body size bounds uploads before they
    are parsed, prompt/seconds/pixels/steps bound the work of one job, the queue bound and the per-client
    cap bound the work waiting.
    """

    model: str | os.PathLike | None = None  # model directory; None = the embedded default model
    device: str | None = None  # where workers compute: auto, cpu, cuda[:N]; None = the CPU (devices.resolve_device)
    dtype: str | None = None  # auto, float32, bfloat16, float16; None = the device's default
    data_dir: str | os.PathLike = "serve_data"  # clips, thumbnails, uploaded references
    db_url: str | None = None  # SQLAlchemy URL; None = sqlite:///DATA_DIR/jobs.sqlite
    storage_url: str | None = None  # clips and uploads: a directory or s3://BUCKET/PREFIX; None = DATA_DIR
    workers: int = 1  # generation threads, each with its own model load; 0 on PostgreSQL: an API server only
    api_keys: tuple[str, ...] = ()  # bearer tokens accepted on /v1; empty = no auth for generation
    admin_key: str | None = None  # bearer token for /v1/admin; None = admin routes disabled
    price_per_hour: float = 2.0  # currency units per hour of worker compute, for the cost of each job
    currency: str = "usd"
    max_body_bytes: int = 16 * 1024 * 1024  # whole request, uploads included
    max_prompt_chars: int = MAX_PROMPT_CHARS
    min_seconds: float = 0.1
    max_seconds: float = 15.0  # HappyHorse 1.1's longest; longer than a window is made in windows
    max_side: int = 1280  # pixels, each of width and height
    max_pixels: int = 1280 * 720  # width x height
    max_steps: int = 100
    max_queued: int = 256  # jobs waiting across all clients; beyond it POST /v1/videos answers 429
    max_jobs_per_client: int = 8  # queued + in_progress jobs of one client
    max_attempts: int = 2  # a job interrupted by a restart runs again until it has started this often
    page_limit: int = 100  # largest `limit` of GET /v1/videos
    keep_hours: float | None = None  # finished jobs and their files are deleted this long after; None = kept

    def __post_init__(self):
        shared = self.db_url is not None and self.db_url.startswith("postgresql")
        if not isinstance(self.workers, int) or self.workers < (0 if shared else 1):
            raise ValueError(
                f"workers: must be >= 1 (0, an API server only, needs a PostgreSQL --db), got {self.workers!r}"
            )
        for name in ("max_body_bytes", "max_prompt_chars", "max_side", "max_pixels", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("max_queued", "max_jobs_per_client", "max_attempts", "page_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"max_seconds: must be >= min_seconds ({self.min_seconds}), got {self.max_seconds}")
        if self.keep_hours is not None and not self.keep_hours > 0:
            raise ValueError(f"keep_hours: must be > 0 hours (or None to keep everything), got {self.keep_hours}")
        if self.price_per_hour < 0:
            raise ValueError(f"price_per_hour: must be >= 0, got {self.price_per_hour}")
        if any(not key for key in self.api_keys) or self.admin_key == "":
            raise ValueError("api_keys / admin_key: an empty token would accept every request; give a non-empty one")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_path / 'jobs.sqlite').resolve()}"

    @property
    def model_dir(self) -> Path:
        return Path(self.model) if self.model is not None else DEFAULT_MODEL_DIR


def check_model_dir(model: str | os.PathLike | None) -> Path:
    """Fail before serving, with the reason, when the model directory is missing: a server whose every
    job fails is worse than one that does not start."""
    directory = Path(model) if model is not None else DEFAULT_MODEL_DIR
    if not (directory / "model_index.json").is_file():
        if model is None:
            raise FileNotFoundError(
                f"no embedded default model at {directory} (it ships with a trained release); "
                "pass a model directory with --model DIR, e.g. the DIR/model written by `happyhorse train`"
            )
        raise FileNotFoundError(f"model: {directory} is not a model directory (no model_index.json)")
    return directory
