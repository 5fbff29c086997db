"""Where clips, thumbnails and uploaded inputs live: a directory (local or NFS) or an S3-compatible
object store, by URL, so that any API server can return what any worker wrote.

Keys are the same in both: `videos/ID.mp4`, `videos/ID.json`, `videos/ID.thumbnail.png`,
`videos/ID.spritesheet.png`, `inputs/NAME.png|wav`. Every write is whole or absent: a directory writes
a temporary file and renames it; an S3 PUT is atomic by the protocol. Reads stream.

- `None` or a path or `file:///path`: `DirectoryStorage` (the server's data directory by default).
- `s3://BUCKET/PREFIX`: `S3Storage` through boto3; the endpoint from `?endpoint=http://host:port` or
  `AWS_ENDPOINT_URL`, credentials from the usual AWS variables; the bucket is created if missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fastapi.responses import FileResponse, StreamingResponse


class StorageError(RuntimeError):
    """The storage could not be reached or refused an operation: the API answers 503."""


def video_keys(job_id: str) -> dict[str, str]:
    """A job's output keys by kind."""
    return {
        "video": f"videos/{job_id}.mp4",
        "sidecar": f"videos/{job_id}.json",
        "thumbnail": f"videos/{job_id}.thumbnail.png",
        "spritesheet": f"videos/{job_id}.spritesheet.png",
    }


class DirectoryStorage:
    """Keys as files below a root directory (which NFS may share between machines)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = self.root.resolve().as_uri()

    def path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, key: str, source: str | os.PathLike) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def fetch(self, key: str, dest: str | os.PathLike) -> Path:
        """The object as a local file at `dest` (a copy; the original may be removed any time)."""
        if not self.path(key).is_file():
            raise FileNotFoundError(key)
        shutil.copyfile(self.path(key), dest)
        return Path(dest)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def response(self, key: str, media_type: str, filename: str):
        return FileResponse(self.path(key), media_type=media_type, filename=filename)

    def check(self) -> None:
        """Raise StorageError unless a write and a delete work (the health check)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".health.{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"storage: {self.root} is not writable ({exc})") from None


class S3Storage:
    """Keys as objects below `prefix` in an S3 bucket (AWS, MinIO, SeaweedFS, ...)."""

    def __init__(self, url: str):
        import boto3
        from botocore.config import Config

        parts = urlparse(url)
        if not parts.netloc:
            raise ValueError(f"storage: an S3 URL names its bucket, s3://BUCKET/PREFIX, got {url!r}")
        self.url, self.bucket, self.prefix = url, parts.netloc, parts.path.strip("/")
        endpoint = (parse_qs(parts.query).get("endpoint") or [os.environ.get("AWS_ENDPOINT_URL")])[0]
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2}),
        )
        self._bucket_checked = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(kwargs.get("Key", what)) from None
            raise StorageError(f"storage: {what} failed on {self.url} ({exc})") from None
        except BotoCoreError as exc:
            raise StorageError(f"storage: {what} failed on {self.url} ({exc})") from None

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        try:
            self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)
        except FileNotFoundError:
            try:
                self._call("create bucket", self.client.create_bucket, Bucket=self.bucket)
            except StorageError as exc:  # another process created it meanwhile
                if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                    raise
        self._bucket_checked = True

    def put_file(self, key: str, source: str | os.PathLike) -> None:
        self._ensure_bucket()
        with open(source, "rb") as f:
            self._call("put", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=f)

    def fetch(self, key: str, dest: str | os.PathLike) -> Path:
        body = self._call("get", self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"]
        with open(dest, "wb") as f:
            shutil.copyfileobj(body, f)
        return Path(dest)

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def response(self, key: str, media_type: str, filename: str):
        obj = self._call("get", self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        headers = {"content-disposition": f'attachment; filename="{filename}"'}
        if obj.get("ContentLength") is not None:
            headers["content-length"] = str(obj["ContentLength"])
        return StreamingResponse(obj["Body"].iter_chunks(64 * 1024), media_type=media_type, headers=headers)

    def check(self) -> None:
        self._bucket_checked = False
        self._ensure_bucket()
        key = f".health.{os.getpid()}"
        self._call("put", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=b"ok")
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))


Storage = DirectoryStorage | S3Storage  # what `open_storage` returns; both have the same methods


def open_storage(url: str | None, data_dir: str | os.PathLike) -> Storage:
    """The storage at `url`: the data directory when None, a directory for a path or file:// URL, an S3
    bucket for s3://; anything else is a ValueError naming it."""
    if not url:
        return DirectoryStorage(data_dir)
    scheme = urlparse(url).scheme
    if scheme == "s3":
        return S3Storage(url)
    if scheme == "file":
        return DirectoryStorage(urlparse(url).path)
    if scheme == "":
        return DirectoryStorage(url)
    raise ValueError(f"storage: must be a directory, file:///PATH or s3://BUCKET/PREFIX, got {url!r}")
