"""Load, kill-and-restart and fuzz checks of `happyhorse serve` on loopback, with a tiny model.

    python bench/serve_bench.py load --clients 100          # 100 concurrent openai clients, one job each
    python bench/serve_bench.py restart --jobs 20 --kills 3  # kill -9 the server mid-run, restart, count losses
    python bench/serve_bench.py fuzz --max-examples 100      # schemathesis against /openapi.json: any 5xx?
    python bench/serve_bench.py drill --db postgresql+psycopg://USER:PASS@127.0.0.1/postgres \
        [--restart-db "pg_ctlcluster 15 main restart"]      # 2 API servers + 3 workers + PostgreSQL, kills

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


# ---------------------------------------------------------------------------------------- drill


def start_worker(model: Path, db: str, storage: Path, data: Path, port: int) -> subprocess.Popen:
    data.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "happyhorse", "worker", "--model", str(model), "--db", db]
    command += ["--storage", str(storage), "--data", str(data), "--port", str(port)]
    log = open(data / "worker.log", "ab")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}: {(data / 'worker.log').read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        time.sleep(0.2)
    raise RuntimeError("worker did not become healthy")


def drill(args, work: Path) -> dict:
    """2 API servers + 3 workers + PostgreSQL on loopback: `--jobs` jobs from `--clients` concurrent clients;
    kill -9 of a worker (at a quarter of the jobs done) and of an API server (at half), the database
    restarted (at two thirds, with --restart-db). Every job must complete, once."""
    import threading
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    sys.path.insert(0, str(ROOT))
    from happyhorse.serve.store import JobStore

    name = f"hh_drill_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.db, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives a restart
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = make_url(args.db).set(database=name).render_as_string(hide_password=False)
    model = Path(args.model) if args.model else tiny_model(work)
    storage = work / "store"
    apis, workers, events = [], [], {}
    try:
        for k in range(args.apis):  # started at the same moment: the schema is created once, under its lock
            (work / f"api{k}").mkdir()
        with ThreadPoolExecutor(args.apis) as pool:
            ports = [free_port() for _ in range(args.apis)]
            extra = ["--workers", "0", "--db", db, "--storage", str(storage), "--max-jobs-per-client", "1000"]
            apis = list(pool.map(lambda k: start_server(model, work / f"api{k}", ports[k], *extra), range(args.apis)))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        worker_ports = [free_port() for _ in range(args.workers)]
        workers = [start_worker(model, db, storage, work / f"w{k}", worker_ports[k]) for k in range(args.workers)]
        store = JobStore(db)
        alive = list(range(args.apis))
        done_at: dict[str, float] = {}
        failures: list[str] = []
        lock = threading.Lock()

        def call(method: str, path: str, k: int, **kw):
            """A request to an API server that is up, the next one on a refused connection or a 503."""
            for attempt in range(60):
                base = bases[alive[(k + attempt) % len(alive)]]
                try:
                    r = httpx.request(method, base + path, timeout=30, **kw)
                    if r.status_code != 503:
                        return r
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            raise RuntimeError(f"{method} {path}: no API server answered")

        def client(k: int) -> None:
            ids = []
            for j in range(args.jobs // args.clients):
                r = call("POST", "/v1/videos", k, data={"prompt": f"client {k} job {j}: a red ball bounces"})
                ids.append((r.json()["id"], time.monotonic()))
            for job_id, t0 in ids:
                while time.monotonic() - t0 < args.timeout:
                    status = call("GET", f"/v1/videos/{job_id}", k).json()["status"]
                    if status in ("completed", "failed"):
                        with lock:
                            done_at[job_id] = time.monotonic() - t0
                            if status == "failed":
                                failures.append(job_id)
                        break
                    time.sleep(0.3)

        def chaos(total: int) -> None:
            def when(share: float) -> None:
                while len(done_at) < share * total:
                    time.sleep(0.1)

            when(0.25)
            busy = httpx.get(f"http://127.0.0.1:{worker_ports[0]}/health", timeout=5).json().get("busy")
            workers[0].send_signal(signal.SIGKILL)
            events["worker_killed"] = {"at_done": len(done_at), "job": busy}
            if busy:  # how long until another worker has taken its job again
                t0 = time.monotonic()
                while (job := store.get(busy)) is not None and job.attempts < 2 and job.status != "completed":
                    time.sleep(0.1)
                events["worker_killed"]["requeue_s"] = round(time.monotonic() - t0, 2)
            when(0.5)
            apis[0].send_signal(signal.SIGKILL)
            alive.remove(0)
            events["api_killed"] = {"at_done": len(done_at)}
            if args.restart_db:
                when(0.66)
                t0 = time.monotonic()
                subprocess.run(args.restart_db, shell=True, check=True)
                events["database_restarted"] = {"at_done": len(done_at), "restart_s": round(time.monotonic() - t0, 2)}

        start = time.monotonic()
        total = args.clients * (args.jobs // args.clients)
        monkey = threading.Thread(target=chaos, args=(total,), daemon=True)
        monkey.start()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall = time.monotonic() - start
        jobs = [store.get(i) for i in done_at]
        attempts = {}
        for job in jobs:
            attempts[job.attempts] = attempts.get(job.attempts, 0) + 1
        missing = [j.id for j in jobs if not (storage / "videos" / f"{j.id}.mp4").is_file()]
        return {
            "check": "drill",
            "api_servers": args.apis,
            "workers": args.workers,
            "jobs": total,
            "completed": sum(j.status == "completed" for j in jobs),
            "failed": failures,
            "lost": total - len(done_at),
            "missing_mp4": missing,
            "attempts": attempts,  # a job started twice ran on the killed worker first; it completed once
            "jobs_per_s": round(total / wall, 3),
            "latency_s": percentiles(list(done_at.values())),
            "events": events,
            "wall_s": round(wall, 1),
        }
    finally:
        for process in workers + apis:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers + apis:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)
            if process.poll() is None:
                process.kill()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
    p = sub.add_parser("drill")
    p.add_argument("--db", required=True, help="A PostgreSQL URL whose role may create databases.")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--apis", type=int, default=2)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--model", help="Model directory (default: a tiny random one: the drill measures serving).")
    p.add_argument("--restart-db", help='A command that restarts the database, e.g. "pg_ctlcluster 15 main restart".')
    p.add_argument("--timeout", type=float, default=900, help="Seconds a job may take before it counts as lost.")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp:
        result = {"load": load, "restart": restart, "fuzz": fuzz, "drill": drill}[args.check](args, Path(tmp))
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    ok = {
        "load": result.get("completed") == result.get("jobs"),
        "restart": result.get("lost") == 0,
        "fuzz": result.get("server_errors_5xx") == 0,
        "drill": result.get("lost") == 0 and result.get("completed") == result.get("jobs"),
    }[args.check]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
