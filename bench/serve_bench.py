"""Load, kill-and-restart and fuzz checks of `happyhorse serve` on loopback, with a tiny model.

    python bench/serve_bench.py load --clients 100          # 100 concurrent openai clients, one job each
    python bench/serve_bench.py restart --jobs 20 --kills 3  # kill -9 the server mid-run, restart, count losses
    python bench/serve_bench.py fuzz --max-examples 100      # schemathesis against /openapi.json: any 5xx?

Each starts the real command (`python -m happyhorse serve`) as a child process on a free port, with a
fresh data directory and SQLite job store, and prints one JSON line of figures (also to --json FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 900  # a niced server beside a training run may take minutes to import torch


def tiny_model(directory: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import tiny_pipeline

    return tiny_pipeline().save_pretrained(directory / "tiny")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, data: Path, port: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "happyhorse", "serve", "--model", str(model), "--data", str(data)]
    command += ["--port", str(port), *extra]
    log = open(data.parent / f"server_{port}.log", "ab")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}; its log: {Path(log.name).read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        time.sleep(0.2)
    process.kill()
    tail = Path(log.name).read_text()[-3000:]
    raise RuntimeError(f"server did not become healthy in {START_TIMEOUT_S} s; its log: {tail}")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50": round(pick(0.5), 3),
        "p95": round(pick(0.95), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


# ---------------------------------------------------------------------------------------- load


async def one_client(base: str, k: int, jobs: int, seconds: str, out: dict) -> None:
    import av
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=f"load-client-{k}", max_retries=5, timeout=600)
    for j in range(jobs):
        t0 = time.perf_counter()
        try:
            video = await client.videos.create(prompt=f"client {k} clip {j}: a red ball bounces", seconds=seconds)
            out["submit_s"].append(time.perf_counter() - t0)
            video = await client.videos.poll(video.id, poll_interval_ms=200)
            if video.status != "completed":
                out["failed"].append(f"{video.id}: {video.error}")
                continue
            data = (await client.videos.download_content(video.id)).content
            with av.open(io.BytesIO(data)) as container:
                assert container.streams.video and container.streams.audio, "MP4 lacks a stream"
            out["completed"] += 1
            out["end_to_end_s"].append(time.perf_counter() - t0)
            out["compute_s"].append(video.model_extra["cost"]["compute_seconds"])
        except Exception as exc:
            out["failed"].append(f"client {k}: {type(exc).__name__}: {exc}")
    await client.close()


async def probe_reads(base: str, stop: asyncio.Event, out: dict) -> None:
    """While the load runs, how fast does the API answer a read? (the event loop must stay free)"""
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            await client.get(f"{base}/v1/videos", params={"limit": 1})
            out["read_s"].append(time.perf_counter() - t0)
            await asyncio.sleep(0.1)


async def run_load(base: str, clients: int, jobs: int, seconds: str) -> dict:
    out = {"completed": 0, "failed": [], "submit_s": [], "end_to_end_s": [], "compute_s": [], "read_s": []}
    stop = asyncio.Event()
    probe = asyncio.create_task(probe_reads(base, stop, out))
    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(base, k, jobs, seconds, out) for k in range(clients)))
    wall = time.perf_counter() - t0
    stop.set()
    await probe
    return {
        "clients": clients,
        "jobs": clients * jobs,
        "completed": out["completed"],
        "failed": len(out["failed"]),
        "failures": out["failed"][:5],
        "wall_s": round(wall, 2),
        "jobs_per_s": round(out["completed"] / wall, 2),
        "submit_latency_s": percentiles(out["submit_s"]),
        "end_to_end_latency_s": percentiles(out["end_to_end_s"]),
        "compute_s_per_job": percentiles(out["compute_s"]),
        "read_latency_under_load_s": percentiles(out["read_s"]),
    }


def load(args, work: Path) -> dict:
    model = tiny_model(work)
    port = free_port()
    extra = ["--max-queued", str(max(256, args.clients * args.jobs)), "--workers", str(args.workers)]
    server = start_server(model, work / "data", port, *extra)
    try:
        result = asyncio.run(run_load(f"http://127.0.0.1:{port}", args.clients, args.jobs, args.seconds))
        result["metrics"] = [
            line for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines() if "jobs{" in line
        ]
    finally:
        stop_server(server)
    return {"check": "load", "workers": args.workers, "seconds_per_clip": args.seconds, **result}


# ---------------------------------------------------------------------------------------- restart


def restart(args, work: Path) -> dict:
    """Submit jobs, kill -9 the server while one runs, restart it, repeat; then wait for every job."""
    model = tiny_model(work)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    extra = ("--max-jobs-per-client", str(args.jobs), "--max-seconds", "20")
    server = start_server(model, work / "data", port, *extra)
    try:
        # more sampling steps than the model's 3, so that each kill lands while a job is mid-sampling
        body = {"seconds": "1", "num_inference_steps": str(args.steps)}
        ids = [
            httpx.post(f"{base}/v1/videos", data={"prompt": f"clip {k}", **body}, timeout=60).json()["id"]
            for k in range(args.jobs)
        ]
        kills, killed = [], set()
        for k in range(args.kills):
            running, jobs = [], []
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:  # kill while a new job is mid-sampling, after k + 1 completed
                jobs = httpx.get(f"{base}/v1/videos", params={"limit": 100}, timeout=60).json()["data"]
                running = [
                    j for j in jobs if j["status"] == "in_progress" and 0 < j["progress"] < 90 and j["id"] not in killed
                ]
                if running and sum(j["status"] == "completed" for j in jobs) > k:
                    killed.add(running[0]["id"])
                    break
                time.sleep(0.05)
            counts = {s: sum(j["status"] == s for j in jobs) for s in ("queued", "in_progress", "completed", "failed")}
            server.kill()  # SIGKILL: no shutdown handler runs
            server.wait()
            kills.append({"at": counts, "killed_during": running[0]["id"] if running else None})
            server = start_server(model, work / "data", port, *extra)
            kills[-1]["recovered"] = httpx.get(f"{base}/health", timeout=60).json()["recovered_at_start"]
        deadline = time.monotonic() + args.timeout
        final = {}
        while time.monotonic() < deadline:
            final = {i: httpx.get(f"{base}/v1/videos/{i}", timeout=60) for i in ids}
            if all(r.status_code == 200 and r.json()["status"] in ("completed", "failed") for r in final.values()):
                break
            time.sleep(0.5)
    finally:
        stop_server(server)
    statuses = [r.json()["status"] if r.status_code == 200 else f"http {r.status_code}" for r in final.values()]
    failed = [r.json() for r in final.values() if r.status_code == 200 and r.json()["status"] == "failed"]
    return {
        "check": "restart",
        "jobs": len(ids),
        "kills": kills,
        "completed": statuses.count("completed"),
        "failed": statuses.count("failed"),
        "failure_reasons": [j["error"]["message"] for j in failed][:3],
        "lost": len(ids) - statuses.count("completed") - statuses.count("failed"),
    }


# ---------------------------------------------------------------------------------------- fuzz


def fuzz(args, work: Path) -> dict:
    """schemathesis over every operation of /openapi.json (positive and negative data); counts 5xx."""
    model = tiny_model(work)
    port = free_port()
    extra = ("--max-jobs-per-client", "100000", "--max-queued", "100000", "--max-seconds", "2")
    os.environ["HAPPYHORSE_ADMIN_KEY"] = "fuzz-admin"  # so the admin routes are exercised too
    server = start_server(model, work / "data", port, *extra)
    report = work / "fuzz.ndjson"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"http://127.0.0.1:{port}/openapi.json",
        "--checks",
        args.checks,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        "1",
        "--header",
        "Authorization: Bearer fuzz-admin",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    try:
        run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=args.timeout)
    finally:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        stop_server(server)
    responses = {
        line.split("}")[0].split('"')[1]: int(float(line.split()[-1]))
        for line in metrics.splitlines()
        if line.startswith("happyhorse_http_responses_total{")
    }
    tail = run.stdout.strip().splitlines()[-25:]
    return {
        "check": "fuzz",
        "schemathesis_exit": run.returncode,
        "checks": args.checks,
        "max_examples_per_operation": args.max_examples,
        "responses_by_class": responses,
        "server_errors_5xx": responses.get("5xx", 0),
        "summary": tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("load")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--jobs", type=int, default=1, help="Jobs per client, one after another.")
    p.add_argument("--seconds", default="0.75", help="Clip length each job asks for.")
    p.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("restart")
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--timeout", type=float, default=1800)
    p = sub.add_parser("fuzz")
    p.add_argument("--max-examples", type=int, default=100)
    p.add_argument("--checks", default="not_a_server_error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp:
        result = {"load": load, "restart": restart, "fuzz": fuzz}[args.check](args, Path(tmp))
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    ok = {
        "load": result.get("completed") == result.get("jobs"),
        "restart": result.get("lost") == 0,
        "fuzz": result.get("server_errors_5xx") == 0,
    }[args.check]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
