"""The job store and the arena on PostgreSQL, the database a shared deployment uses.

Runs where HAPPYHORSE_TEST_POSTGRES names a server and a role that may create databases, e.g.
`postgresql+psycopg://hh:hh@localhost/hh` (scripts/test.sh starts Debian's cluster and sets it when
the `postgresql` package is installed); each test gets a database of its own and drops it after.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np
import pytest

URL = os.environ.get("HAPPYHORSE_TEST_POSTGRES")


@pytest.fixture
def pg_url():
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not URL:
        message = "needs PostgreSQL: set HAPPYHORSE_TEST_POSTGRES (scripts/test.sh does, as root with apt-get)"
        if os.environ.get("HAPPYHORSE_REQUIRE_ALL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"hh_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_serve_jobs_run_list_delete_and_survive_a_restart(pg_url, tmp_path):
    from happyhorse.serve import ServeConfig
    from tests.conftest import tiny_pipeline
    from tests.test_serve import running, wait_done

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    config = ServeConfig(model=model, data_dir=tmp_path / "data", db_url=pg_url, workers=2)
    with running(config) as client:
        ids = [client.post("/v1/videos", data={"prompt": f"a red ball {k}"}).json()["id"] for k in range(4)]
        assert [wait_done(client, i)["status"] for i in ids] == ["completed"] * 4  # two workers, no double claim
        listed = client.get("/v1/videos", params={"limit": 2}).json()
        assert len(listed["data"]) == 2 and listed["has_more"]
        assert client.delete(f"/v1/videos/{ids[0]}").json()["deleted"]
    with running(config) as client:  # a second server process on the same database finds the jobs
        assert {v["id"] for v in client.get("/v1/videos").json()["data"]} == set(ids[1:])


def test_arena_battles_votes_race_import_and_board(pg_url, tmp_path):
    from happyhorse.arena.clips import ArenaFormat
    from happyhorse.arena.service import Arena, Conflict
    from tests.test_arena_battles import SECONDS, after, make_entry_dirs

    arena = Arena(pg_url, media_dir=tmp_path / "media", fmt=ArenaFormat(seconds=SECONDS))
    arena.set_rules(gold_rate=0.0, min_votes=1)
    dirs = make_entry_dirs(tmp_path / "clips", seeds=(0, 1))
    for name in ("alpha", "bravo", "charlie"):
        arena.add_clips_entry(name, dirs[name])
    rng = np.random.default_rng(0)
    for k in range(6):
        battle = arena.new_battle(f"voter-{k % 3}", "t2v-sound", rng=rng)
        arena.vote(battle["battle_id"], f"voter-{k % 3}", "left", at=after(battle))
    battle = arena.new_battle("voter-9", "t2v-sound", rng=rng)
    outcomes, gate = [], threading.Barrier(2)

    def vote():
        gate.wait()
        try:
            outcomes.append(arena.vote(battle["battle_id"], "voter-9", "right", at=after(battle))["winner"])
        except Conflict:
            outcomes.append("Conflict")

    threads = [threading.Thread(target=vote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Conflict", "right"]
    csv_path = tmp_path / "votes.csv"
    csv_path.write_text("model_a,model_b,winner,voter,category\nalpha,bravo,model_a,u1,t2v-sound\n")
    assert arena.import_votes(csv_path)["imported"] == 1
    assert arena.import_votes(csv_path)["duplicates"] == 1
    board = arena.leaderboard("t2v-sound")
    assert board["votes"]["total"] == 8 and {r["codename"] for r in board["rows"]} == {"alpha", "bravo", "charlie"}


def test_servers_and_workers_starting_together_on_an_empty_database_all_come_up(pg_url):
    """Eight job stores and arena stores opened at the same moment on a new database: one creates the
    tables under the schema lock, the others wait and find them (no UniqueViolation)."""
    from happyhorse.arena.store import open_engine
    from happyhorse.serve.store import JobStore

    barrier, errors = threading.Barrier(8), []

    def start(k: int) -> None:
        barrier.wait()
        try:
            JobStore(pg_url).close() if k % 2 else open_engine(pg_url).dispose()
        except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_api_servers_and_worker_processes_share_one_queue(pg_url, tmp_path):
    """Two API-only servers (no model thread) and a `happyhorse worker` process on the same PostgreSQL:
    jobs posted to either run in the worker, each once, and either server returns them."""
    import subprocess
    import sys

    import httpx

    from happyhorse.serve import ServeConfig
    from happyhorse.serve.queue import wait_for
    from tests.conftest import tiny_pipeline
    from tests.s3_server import free_ports
    from tests.test_serve import running

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    shared = dict(model=model, db_url=pg_url, workers=0, storage_url=str(tmp_path / "store"))
    port = free_ports(1)[0]
    worker = subprocess.Popen(
        [sys.executable, "-m", "happyhorse", "worker", "--db", pg_url, "--model", str(model),
         "--storage", str(tmp_path / "store"), "--data", str(tmp_path / "w"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with (
            running(ServeConfig(data_dir=tmp_path / "a", **shared)) as a,
            running(ServeConfig(data_dir=tmp_path / "b", **shared)) as b,
        ):
            ids = [
                c.post("/v1/videos", data={"prompt": f"a red ball {k}"}).json()["id"] for k, c in enumerate([a, b] * 3)
            ]

            def done():
                return all(a.get(f"/v1/videos/{i}").json()["status"] == "completed" for i in ids)

            assert wait_for(done, timeout=120), [a.get(f"/v1/videos/{i}").json() for i in ids]
            assert all(b.get(f"/v1/videos/{i}/content").status_code == 200 for i in ids)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text  # the worker's own
            assert 'happyhorse_worker_jobs_total{outcome="completed"} 6' in metrics, metrics
            assert (
                "happyhorse_queue_depth" in metrics and httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            )
    finally:
        worker.terminate()
        out = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert "worker:" in out, out


def test_a_killed_workers_job_runs_again_on_another_worker_once(pg_url, tmp_path):
    """kill -9 of the worker running a job: its heartbeat stops, another worker re-queues the job after
    STALLED_S and runs it; the job completes once, with one more attempt."""
    import signal
    import subprocess
    import sys

    from happyhorse.serve import ServeConfig
    from happyhorse.serve.queue import wait_for
    from tests.test_serve import running

    def start_worker(name):
        return subprocess.Popen(
            [sys.executable, "-m", "happyhorse", "worker", "--db", pg_url, "--storage", str(tmp_path / "store"),
             "--data", str(tmp_path / name)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    config = ServeConfig(data_dir=tmp_path / "api", db_url=pg_url, workers=0, storage_url=str(tmp_path / "store"))
    first = start_worker("w1")  # the embedded default model: a 15 s clip takes it several seconds
    second = None
    try:
        with running(config) as api:
            video = api.post("/v1/videos", data={"prompt": "a red ball bounces", "seconds": "15"}).json()

            def status():
                return api.get(f"/v1/videos/{video['id']}").json()["status"]

            assert wait_for(lambda: status() == "in_progress", timeout=120)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            second = start_worker("w2")
            assert wait_for(lambda: status() == "completed", timeout=300), api.get(f"/v1/videos/{video['id']}").json()
            from happyhorse.serve.store import JobStore

            assert JobStore(pg_url).get(video["id"]).attempts == 2
            assert api.get(f"/v1/videos/{video['id']}/content").status_code == 200
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=120)


def test_the_database_gone_is_a_503_and_back_it_serves_with_no_job_lost(pg_url, tmp_path):
    """Connections to the job database refused (as when it is down): requests answer 503 in OpenAI's error
    shape and /health fails, quickly; allowed again, the queued job runs and nothing is lost."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from happyhorse.serve import ServeConfig
    from tests.conftest import tiny_pipeline
    from tests.test_serve import running, wait_done

    name = make_url(pg_url).database
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")

    def allow(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}'))
            if not on:
                conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    config = ServeConfig(model=model, data_dir=tmp_path / "data", db_url=pg_url)
    try:
        with running(config) as client:
            first = client.post("/v1/videos", data={"prompt": "a red ball"}).json()
            assert wait_done(client, first["id"])["status"] == "completed"
            allow(False)
            for response in (client.post("/v1/videos", data={"prompt": "a blue box"}), client.get("/v1/videos")):
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "service_unavailable"
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["database"].startswith("unavailable")
            allow(True)
            assert client.get("/health").status_code == 200
            second = client.post("/v1/videos", data={"prompt": "a blue box"}).json()
            assert wait_done(client, second["id"])["status"] == "completed"
            assert {v["id"] for v in client.get("/v1/videos").json()["data"]} == {first["id"], second["id"]}
    finally:
        allow(True)
        admin.dispose()


def test_a_worker_that_cannot_load_its_model_fails_its_health_check_and_takes_no_job(pg_url, tmp_path):
    import subprocess
    import sys

    import httpx

    from happyhorse.serve.queue import wait_for
    from tests.conftest import tiny_pipeline
    from tests.s3_server import free_ports

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    (model / "transformer" / "model.safetensors").write_bytes(b"not weights")  # a broken model directory
    port = free_ports(1)[0]
    worker = subprocess.Popen(
        [sys.executable, "-m", "happyhorse", "worker", "--db", pg_url, "--model", str(model), "--port", str(port),
         "--data", str(tmp_path / "w")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def answered():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                return None

        assert wait_for(lambda: answered() is not None, timeout=120)
        health = answered()
        assert health.status_code == 503 and health.json()["model"].startswith("not loaded")
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_a_higher_priority_job_runs_first_on_the_shared_queue(pg_url, tmp_path):
    """Jobs queued while no worker runs: the worker that starts takes the high-priority one first; the
    openai client talks to an API-only server as to any other."""
    import subprocess
    import sys

    from openai import OpenAI

    from happyhorse.serve import ServeConfig
    from happyhorse.serve.queue import wait_for
    from happyhorse.serve.store import JobStore
    from tests.conftest import tiny_pipeline
    from tests.test_serve import live_server

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    config = ServeConfig(model=model, data_dir=tmp_path / "api", db_url=pg_url, workers=0)
    with live_server(config) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="x")
        low = [client.videos.create(prompt=f"a red ball {k}") for k in range(3)]
        high = client.videos.create(prompt="a blue box", extra_body={"priority": 10})
        worker = subprocess.Popen(
            [sys.executable, "-m", "happyhorse", "worker", "--db", pg_url, "--model", str(model),
             "--storage", str(tmp_path / "api"), "--data", str(tmp_path / "w")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            store = JobStore(pg_url)
            ids = [v.id for v in low] + [high.id]
            assert wait_for(lambda: all(store.get(i).status == "completed" for i in ids), timeout=120)
            started = sorted(ids, key=lambda i: store.get(i).started_at)
            assert started[0] == high.id
            assert client.videos.retrieve(high.id).status == "completed"
            assert client.videos.download_content(high.id).content[4:8] == b"ftyp"
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def test_sigterm_lets_a_worker_finish_the_job_in_hand(pg_url, tmp_path):
    """A graceful shutdown (SIGTERM, as an orchestrator sends) mid-job: the job completes, then the
    worker exits; nothing is left in progress."""
    import signal
    import subprocess
    import sys

    from happyhorse.serve import ServeConfig
    from happyhorse.serve.queue import wait_for
    from tests.test_serve import running

    config = ServeConfig(data_dir=tmp_path / "api", db_url=pg_url, workers=0)  # the embedded default model
    worker = subprocess.Popen(
        [sys.executable, "-m", "happyhorse", "worker", "--db", pg_url, "--storage", str(tmp_path / "api"),
         "--data", str(tmp_path / "w")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with running(config) as api:
            video = api.post("/v1/videos", data={"prompt": "a red ball bounces", "seconds": "15"}).json()

            def status():
                return api.get(f"/v1/videos/{video['id']}").json()["status"]

            assert wait_for(lambda: status() == "in_progress", timeout=120)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=300) == 0
            assert status() == "completed"
    finally:
        if worker.poll() is None:
            worker.kill()
