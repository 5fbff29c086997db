"""The HTTP service: the official openai client end to end, errors in OpenAI's shape, limits, auth,
progress, cost, restart recovery. A tiny model directory keeps every job to milliseconds."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import warnings

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from happyhorse.media import save_audio
from happyhorse.serve import ServeConfig, create_app
from happyhorse.serve.store import JobStore
from happyhorse.serve.worker import Worker
from tests.conftest import tiny_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture
def config(model_dir, tmp_path):
    return ServeConfig(model=model_dir, data_dir=tmp_path / "data")


@contextlib.contextmanager
def running(config: ServeConfig):
    with TestClient(create_app(config)) as client:
        yield client


@contextlib.contextmanager
def live_server(config: ServeConfig):
    """The app under uvicorn on a free loopback port, as `happyhorse serve` runs it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_done(client: TestClient, video_id: str, headers=None, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        video = client.get(f"/v1/videos/{video_id}", headers=headers).json()
        if video["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return video
        time.sleep(0.02)


def png_bytes(colour=(200, 30, 30), size=(40, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_openai_error(response, status: int, param: str | None = "any"):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    if param != "any":
        assert error["param"] == param, error


@contextlib.contextmanager
def held_worker(monkeypatch):
    """Workers claim jobs but wait for `release` before generating: jobs stay queued / in_progress."""
    release = threading.Event()
    original = Worker.run_job

    def run_job(self, job):
        release.wait(300)
        return original(self, job)

    monkeypatch.setattr(Worker, "run_job", run_job)
    try:
        yield release
    finally:
        release.set()


# ---------------------------------------------------------------------------------------- openai client


def test_openai_client_creates_polls_downloads_lists_and_deletes(config, tmp_path):
    from openai import OpenAI

    warnings.simplefilter("ignore", DeprecationWarning)  # the client marks the Videos API deprecated
    with live_server(config) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0)
        video = client.videos.create(prompt="A small red rubber ball falls.", seconds="1", size="32x32")
        assert video.status in ("queued", "in_progress", "completed") and video.seconds == "1"
        video = client.videos.poll(video.id, poll_interval_ms=20)
        assert video.status == "completed" and video.progress == 100 and video.completed_at >= video.created_at
        path = tmp_path / "out.mp4"
        path.write_bytes(client.videos.download_content(video.id).content)
        with av.open(str(path)) as container:
            assert container.streams.video and container.streams.audio
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (32, 32)
            assert stream.codec_context.name == "h264" and container.streams.audio[0].codec_context.name == "aac"
        thumbnail = client.videos.download_content(video.id, variant="thumbnail").content
        assert Image.open(io.BytesIO(thumbnail)).size == (32, 32)
        # image-to-video through the client's multipart upload, and a seed through extra_body
        ti2v = client.videos.create_and_poll(
            prompt="A blue box slides left.",
            input_reference=("first.png", png_bytes(), "image/png"),
            extra_body={"seed": 7},
            poll_interval_ms=20,
        )
        assert ti2v.status == "completed" and ti2v.model_extra["mode"] == "TI2V" and ti2v.model_extra["seed"] == 7
        assert [v.id for v in client.videos.list(limit=1)] == [ti2v.id, video.id]  # paging follows last_id
        assert client.videos.delete(video.id).deleted
        assert [v.id for v in client.videos.list()] == [ti2v.id]
        assert [m.id for m in client.models.list()] == ["tiny"]


def test_sound_upload_gives_ta2v_with_the_sound_s_length(config, tmp_path):
    save_audio(tmp_path / "knock.wav", np.sin(np.linspace(0, 300, 8000))[None].astype(np.float32) * 0.5, 16000)
    with running(config) as client:
        files = {"audio_reference": ("knock.wav", (tmp_path / "knock.wav").read_bytes(), "audio/wav")}
        video = client.post("/v1/videos", data={"prompt": "a ball drops"}, files=files).json()
        assert video["mode"] == "TA2V" and video["seconds"] == "0.5"
        assert wait_done(client, video["id"])["status"] == "completed"


def test_shots_make_one_clip_with_hard_cuts(config):
    """A multi-shot request (the studio's shots, a JSON array in the form) makes one MP4 of all shots."""
    with running(config) as client:
        form = {"prompt": "", "shots": json.dumps(["a red ball", "a blue box"]), "seconds": "2", "seed": "1"}
        video = client.post("/v1/videos", data=form).json()
        assert video["seconds"] == "2" and wait_done(client, video["id"])["status"] == "completed"
        clip = client.get(f"/v1/videos/{video['id']}/content")
        assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"


def test_json_requests_with_data_urls(config):
    import base64

    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with running(config) as client:
        body = {
            "prompt": "a ball",
            "seconds": 0.5,
            "seed": 3,
            "num_inference_steps": 2,
            "input_reference": {"image_url": url},
        }
        video = client.post("/v1/videos", json=body).json()
        assert video["mode"] == "TI2V" and video["seconds"] == "0.5"
        assert wait_done(client, video["id"])["status"] == "completed"


# ---------------------------------------------------------------------------------------- errors and limits

BAD_REQUESTS = [
    ("missing prompt", {"data": {"size": "32x32"}}, 400, "prompt"),
    ("empty prompt", {"data": {"prompt": "   "}}, 400, "prompt"),
    ("long prompt", {"data": {"prompt": "x" * 2001}}, 400, "prompt"),
    ("nul prompt", {"json": {"prompt": "a\x00b"}}, 400, "prompt"),
    (
        "surrogate",
        {"content": b'{"prompt": "\\ud800"}', "headers": {"content-type": "application/json"}},
        400,
        "prompt",
    ),
    ("deep json", {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400, None),
    ("size form", {"data": {"prompt": "a", "size": "big"}}, 400, "size"),
    ("size patch", {"data": {"prompt": "a", "size": "36x32"}}, 400, "size"),
    ("size bound", {"data": {"prompt": "a", "size": "4096x8"}}, 400, "size"),
    ("pixels bound", {"data": {"prompt": "a", "size": "1280x1280"}}, 400, "size"),
    ("seconds text", {"data": {"prompt": "a", "seconds": "four"}}, 400, "seconds"),
    ("seconds bound", {"data": {"prompt": "a", "seconds": "16"}}, 400, "seconds"),
    ("shots text", {"data": {"prompt": "a", "shots": "two shots"}}, 400, "shots"),
    ("priority", {"data": {"prompt": "a", "priority": "1000"}}, 400, "priority"),
    ("shots empty", {"json": {"prompt": "a", "shots": ["a", " "]}}, 400, "shots"),
    ("shots short", {"data": {"prompt": "a", "shots": '["a", "b"]', "seconds": "1"}}, 400, "shots"),
    ("seconds nan", {"json": {"prompt": "a", "seconds": "nan"}}, 400, "seconds"),
    ("seed", {"data": {"prompt": "a", "seed": "-1"}}, 400, "seed"),
    ("seed type", {"data": {"prompt": "a", "seed": "1.5"}}, 400, "seed"),
    ("steps", {"data": {"prompt": "a", "num_inference_steps": "0"}}, 400, "num_inference_steps"),
    ("guidance", {"json": {"prompt": "a", "guidance_scale": 1e9}}, 400, "guidance_scale"),
    ("model", {"data": {"prompt": "a", "model": "sora-2"}}, 400, "model"),
    ("unknown field", {"data": {"prompt": "a", "colour": "red"}}, 400, "colour"),
    ("json array", {"json": ["a"]}, 400, None),
    ("bad json", {"content": b"{", "headers": {"content-type": "application/json"}}, 400, None),
    ("content type", {"content": b"prompt=a", "headers": {"content-type": "text/plain"}}, 415, None),
    (
        "broken image",
        {"data": {"prompt": "a"}, "files": {"input_reference": ("a.png", b"not png")}},
        400,
        "input_reference",
    ),
    ("empty image", {"data": {"prompt": "a"}, "files": {"input_reference": ("a.png", b"")}}, 400, "input_reference"),
    (
        "broken sound",
        {"data": {"prompt": "a"}, "files": {"audio_reference": ("a.wav", b"RIFF....")}},
        400,
        "audio_reference",
    ),
    (
        "good image, broken sound",
        {
            "data": {"prompt": "a"},
            "files": {"input_reference": ("a.png", png_bytes()), "audio_reference": ("a.wav", b"x")},
        },
        400,
        "audio_reference",
    ),
    ("image as text", {"data": {"prompt": "a", "input_reference": "x.png"}}, 400, "input_reference"),
    ("file as field", {"data": {"prompt": "a"}, "files": {"seed": ("s", b"1")}}, 400, "seed"),
    (
        "remote url",
        {"json": {"prompt": "a", "input_reference": {"image_url": "http://example.com/a.png"}}},
        400,
        "input_reference",
    ),
    ("file id", {"json": {"prompt": "a", "input_reference": {"file_id": "file_1"}}}, 400, "input_reference"),
]


@pytest.mark.parametrize("name, request_kwargs, status, param", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_create_requests_are_4xx_in_openai_shape(config, name, request_kwargs, status, param):
    with running(config) as client:
        assert_openai_error(client.post("/v1/videos", **request_kwargs), status, param)
        assert client.get("/v1/videos").json()["data"] == []  # nothing was queued
    inputs = config.data_path / "inputs"
    assert not inputs.exists() or not any(inputs.iterdir())  # nor any upload kept


def test_bad_reads_are_4xx_in_openai_shape(config):
    with running(config) as client:
        assert_openai_error(client.get("/v1/videos/video_nope"), 404, "video_id")
        assert_openai_error(client.get("/v1/videos/video_nope/content"), 404, "video_id")
        assert_openai_error(client.delete("/v1/videos/video_nope"), 404, "video_id")
        assert_openai_error(client.get("/v1/videos", params={"limit": 0}), 400, "limit")
        assert_openai_error(client.get("/v1/videos", params={"order": "up"}), 400, "order")
        assert_openai_error(client.get("/v1/videos", params={"after": "video_nope"}), 400, "after")
        assert_openai_error(client.get("/v1/models/sora-2"), 404, "model_id")
        assert_openai_error(client.get("/v1/nothing"), 404)
        assert_openai_error(client.put("/v1/videos"), 405)
        video = client.post("/v1/videos", data={"prompt": "a"}).json()
        assert wait_done(client, video["id"])["status"] == "completed"
        assert_openai_error(client.get(f"/v1/videos/{video['id']}/content", params={"variant": "gif"}), 400, "variant")


def test_request_size_limit(model_dir, tmp_path):
    config = ServeConfig(model=model_dir, data_dir=tmp_path, max_body_bytes=50_000)
    with running(config) as client:
        big = {"input_reference": ("a.png", b"\0" * 60_000, "image/png")}
        assert_openai_error(client.post("/v1/videos", data={"prompt": "a"}, files=big), 413)

        def chunks():  # no Content-Length: the limit holds while the body streams
            for _ in range(10):
                yield b"x" * 10_000

        response = client.post("/v1/videos", content=chunks(), headers={"content-type": "application/json"})
        assert_openai_error(response, 413)


def test_per_client_cap_and_queue_bound(model_dir, tmp_path, monkeypatch):
    config = ServeConfig(model=model_dir, data_dir=tmp_path, max_jobs_per_client=2, max_queued=3)
    with held_worker(monkeypatch) as release, running(config) as client:
        alice, bob, carol = ({"Authorization": f"Bearer {name}"} for name in ("alice", "bob", "carol"))
        ids = [client.post("/v1/videos", data={"prompt": "a"}, headers=alice).json()["id"] for _ in range(2)]
        refused = client.post("/v1/videos", data={"prompt": "a"}, headers=alice)
        assert_openai_error(refused, 429)
        assert refused.json()["error"]["code"] == "too_many_concurrent_jobs" and refused.headers["retry-after"]
        ids += [client.post("/v1/videos", data={"prompt": "a"}, headers=bob).json()["id"] for _ in range(2)]
        # one job is claimed (in_progress, held), three wait: the queue bound refuses a fourth
        assert_openai_error(client.post("/v1/videos", data={"prompt": "a"}, headers=carol), 429)
        release.set()
        assert all(wait_done(client, i)["status"] == "completed" for i in ids)
        assert client.post("/v1/videos", data={"prompt": "a"}, headers=alice).status_code == 200


# ---------------------------------------------------------------------------------------- auth


def test_bearer_auth_scopes_jobs_and_guards_admin_routes(model_dir, tmp_path):
    config = ServeConfig(model=model_dir, data_dir=tmp_path, api_keys=("k1", "k2"), admin_key="root")
    k1, k2, admin = ({"Authorization": f"Bearer {k}"} for k in ("k1", "k2", "root"))
    with running(config) as client:
        assert_openai_error(client.post("/v1/videos", data={"prompt": "a"}), 401)
        assert_openai_error(client.get("/v1/videos", headers={"Authorization": "Bearer nope"}), 401)
        assert_openai_error(client.get("/v1/models", headers={"Authorization": "Basic azE6"}), 401)
        video = client.post("/v1/videos", data={"prompt": "a"}, headers=k1).json()
        assert wait_done(client, video["id"], headers=k1)["status"] == "completed"
        assert_openai_error(client.get(f"/v1/videos/{video['id']}", headers=k2), 404)  # not yours
        assert client.get("/v1/videos", headers=k2).json()["data"] == []
        assert_openai_error(client.get("/v1/admin/jobs", headers=k1), 401)
        jobs = client.get("/v1/admin/jobs", headers=admin).json()["data"]
        assert [j["id"] for j in jobs] == [video["id"]] and jobs[0]["client"].startswith("key:")
        costs = client.get("/v1/admin/costs", headers=admin).json()
        assert costs["finished_jobs"] == 1 and costs["compute_seconds"] > 0
        assert client.get("/health").status_code == 200  # operations stay open for probes
    with running(ServeConfig(model=model_dir, data_dir=tmp_path / "open")) as client:
        assert_openai_error(client.get("/v1/admin/costs"), 403)  # no admin key configured: admin is off


# ---------------------------------------------------------------------------------------- jobs


def test_progress_per_step_and_cost(model_dir, tmp_path, monkeypatch):
    seen = []
    original = JobStore.set_progress

    def spy(self, job_id, progress):
        seen.append(progress)
        return original(self, job_id, progress)

    monkeypatch.setattr(JobStore, "set_progress", spy)
    config = ServeConfig(model=model_dir, data_dir=tmp_path, price_per_hour=3600.0)
    with running(config) as client:
        video = client.post("/v1/videos", data={"prompt": "a", "num_inference_steps": "5"}).json()
        done = wait_done(client, video["id"])
    assert seen == [19, 38, 57, 76, 95]  # one update per sampling step
    assert done["progress"] == 100 and done["cost"]["compute_seconds"] > 0
    assert done["cost"]["price"] == pytest.approx(done["cost"]["compute_seconds"], rel=1e-3)  # 1 per second
    sidecar = (tmp_path / "videos" / f"{video['id']}.json").read_text()
    assert '"num_inference_steps": 5' in sidecar


def test_failed_job_has_a_reason_and_admin_can_retry_it(model_dir, tmp_path, monkeypatch):
    import happyhorse.serve.worker as worker_module

    original = worker_module.run_generate
    monkeypatch.setattr(worker_module, "run_generate", lambda *a, **k: 1 / 0)
    config = ServeConfig(model=model_dir, data_dir=tmp_path, admin_key="root")
    admin = {"Authorization": "Bearer root"}
    with running(config) as client:
        video = client.post("/v1/videos", data={"prompt": "a"}).json()
        failed = wait_done(client, video["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "generation_failed"
        assert "ZeroDivisionError" in failed["error"]["message"] and failed["cost"]["compute_seconds"] >= 0
        assert_openai_error(client.get(f"/v1/videos/{video['id']}/content"), 409)
        monkeypatch.setattr(worker_module, "run_generate", original)
        assert client.post(f"/v1/admin/videos/{video['id']}/retry", headers=admin).json()["status"] == "queued"
        assert wait_done(client, video["id"])["status"] == "completed"
        assert_openai_error(client.post("/v1/admin/videos/video_x/retry", headers=admin), 404)


def test_a_store_error_does_not_end_the_worker(model_dir, tmp_path, monkeypatch):
    import happyhorse.serve.worker as worker_module

    monkeypatch.setattr(worker_module, "STORE_RETRY_S", 0.05)
    original, failures = JobStore.claim, [0]

    def flaky_claim(self):
        if failures[0] < 3:  # as SQLite's "database is locked" or a dropped connection would
            failures[0] += 1
            raise RuntimeError("database is locked")
        return original(self)

    monkeypatch.setattr(JobStore, "claim", flaky_claim)
    with running(ServeConfig(model=model_dir, data_dir=tmp_path)) as client:
        video = client.post("/v1/videos", data={"prompt": "a red ball"}).json()
        assert wait_done(client, video["id"], timeout=60)["status"] == "completed"
    assert failures[0] == 3


def test_a_worker_whose_model_load_failed_takes_no_jobs(model_dir, tmp_path, monkeypatch):
    from happyhorse.pipeline import HappyHorsePipeline

    original, calls, lock = HappyHorsePipeline.from_pretrained, [0], threading.Lock()

    def second_load_fails(*args, **kwargs):
        with lock:
            calls[0] += 1
            if calls[0] == 2:
                raise MemoryError("no room for another copy")
        return original(*args, **kwargs)

    monkeypatch.setattr(HappyHorsePipeline, "from_pretrained", second_load_fails)
    with running(ServeConfig(model=model_dir, data_dir=tmp_path, workers=2)) as client:
        ids = [client.post("/v1/videos", data={"prompt": f"a red ball {k}"}).json()["id"] for k in range(3)]
        assert [wait_done(client, i, timeout=120)["status"] for i in ids] == ["completed"] * 3
        health = client.get("/health").json()
        assert health["workers"] == 1 and health["status"] == "ok"


def test_workers_compute_on_the_device_and_in_the_dtype_asked_for(model_dir, tmp_path):
    with running(ServeConfig(model=model_dir, data_dir=tmp_path, device="cpu", dtype="bfloat16")) as client:
        job = client.post("/v1/videos", data={"prompt": "a red ball"}).json()
        assert wait_done(client, job["id"], timeout=120)["status"] == "completed"
        health = client.get("/health").json()
        assert (health["device"], health["dtype"]) == ("cpu", "bfloat16")


def test_delete_stops_a_queued_job_and_removes_files(config, monkeypatch):
    with held_worker(monkeypatch) as release, running(config) as client:
        first = client.post("/v1/videos", data={"prompt": "a"}).json()
        second = client.post("/v1/videos", data={"prompt": "b"}).json()
        assert client.delete(f"/v1/videos/{second['id']}").json()["deleted"]
        release.set()
        assert wait_done(client, first["id"])["status"] == "completed"
        assert_openai_error(client.get(f"/v1/videos/{second['id']}"), 404)
        assert client.delete(f"/v1/videos/{first['id']}").status_code == 200
    assert not any((config.data_path / "videos").iterdir())


def test_a_clean_shutdown_requeues_the_running_job_without_using_a_retry(config, monkeypatch):
    import happyhorse.serve.worker as worker_module

    started = threading.Event()

    def endless_generate(pipe, request, output, callback=None):
        while True:  # until the shutdown makes the progress callback raise
            started.set()
            callback(1, 8)
            time.sleep(0.01)

    monkeypatch.setattr(worker_module, "run_generate", endless_generate)
    with running(config) as client:
        video = client.post("/v1/videos", data={"prompt": "a red ball"}).json()
        assert started.wait(60)
    store = JobStore(config.database_url)
    job = store.get(video["id"])
    store.close()
    assert job.status == "queued" and job.attempts == 0


def test_restart_recovery_runs_queued_and_retries_or_fails_interrupted(config):
    config.data_path.mkdir(parents=True)
    store = JobStore(config.database_url)
    params = {"seed": 0, "width": 32, "height": 32, "seconds": 0.5, "mode": "T2V"}
    kwargs = {"client": "ip:test", "model": "tiny", "params": params, "seconds": "0.5", "size": "32x32"}
    queued = store.create(prompt="queued before the stop", **kwargs)
    interrupted = store.create(prompt="running at the stop", **kwargs)
    exhausted = store.create(prompt="interrupted twice", **kwargs)
    for job in (interrupted, exhausted):
        with store.engine.begin() as conn:
            from sqlalchemy import update

            from happyhorse.serve.store import JobRow

            attempts = 1 if job is interrupted else config.max_attempts
            conn.execute(update(JobRow).where(JobRow.id == job.id).values(status="in_progress", attempts=attempts))
    store.close()
    with running(config) as client:
        assert client.get("/health").json()["recovered_at_start"] == {"retried": 1, "failed": 1, "queued": 2}
        assert wait_done(client, queued.id)["status"] == "completed"
        assert wait_done(client, interrupted.id)["status"] == "completed"
        failed = client.get(f"/v1/videos/{exhausted.id}").json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "interrupted"
        assert "not retried" in failed["error"]["message"]


def test_jobs_survive_an_app_restart(config, monkeypatch):
    """Jobs queued or running when the server stops run when it starts again; none is lost."""
    with held_worker(monkeypatch) as release, running(config) as client:
        ids = [client.post("/v1/videos", data={"prompt": f"clip {k}"}).json()["id"] for k in range(3)]
        worker = client.app.state.service.workers[0]
        worker.stopping.set()  # the server stops while the first job runs: it stops at its next step
        release.set()
        worker.join(120)
        assert [client.get(f"/v1/videos/{i}").json()["status"] for i in ids] == ["queued"] * 3  # requeued
    monkeypatch.undo()
    with running(config) as client:
        assert client.get("/health").json()["recovered_at_start"] == {"retried": 0, "failed": 0, "queued": 3}
        assert [wait_done(client, i)["status"] for i in ids] == ["completed"] * 3
        assert client.get("/v1/admin/jobs").status_code == 403


def test_operations_endpoints_and_openapi(config):
    with running(config) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["model"] == "tiny" and health["workers_alive"] == 1
        video = client.post("/v1/videos", data={"prompt": "a"}).json()
        wait_done(client, video["id"])
        metrics = client.get("/metrics").text
        assert 'happyhorse_jobs{status="completed"} 1' in metrics and "happyhorse_compute_seconds_total" in metrics
        schema = client.get("/openapi.json").json()
        content = schema["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(content)
        assert {"/v1/videos/{video_id}/content", "/v1/models", "/health", "/metrics"} <= set(schema["paths"])
        page = client.get("/")
        assert page.status_code == 200 and 'id="prompt"' in page.text
        assert client.get("/static/studio.js").status_code == 200
        assert "cdn" not in page.text.lower() and "http" not in client.get("/static/studio.js").text


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    import happyhorse.serve.config as serve_config

    monkeypatch.setattr(serve_config, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no embedded default model.*--model DIR"):
        create_app(ServeConfig(data_dir=tmp_path))
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        create_app(ServeConfig(model=tmp_path, data_dir=tmp_path))


def test_cli_serve_refuses_a_missing_model(tmp_path):
    from typer.testing import CliRunner

    from happyhorse.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and "model_index.json" in result.output
    for flag, value in (("--device", "npu"), ("--dtype", "int4")):
        result = CliRunner().invoke(app, ["serve", flag, value, "--data", str(tmp_path / "d")])
        assert result.exit_code == 2 and flag in result.output and not (tmp_path / "d").exists()


def test_cli_serve_trusts_forwarded_for_only_from_named_proxies(model_dir, tmp_path, monkeypatch):
    """Behind a reverse proxy every request comes from the proxy: per-client caps need the client it names."""
    import uvicorn
    from typer.testing import CliRunner

    from happyhorse.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: seen.update(kwargs))
    args = ["serve", "--model", str(model_dir), "--data", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--trusted-proxies", "10.0.0.5"])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] and seen["forwarded_allow_ips"] == "10.0.0.5"


def test_finished_jobs_expire_after_keep_hours(model_dir, tmp_path):
    config = ServeConfig(model=model_dir, data_dir=tmp_path, keep_hours=1.0)
    with running(config) as client:
        video = client.post("/v1/videos", data={"prompt": "a red ball"}).json()
        done = wait_done(client, video["id"])
        assert done["status"] == "completed" and done["expires_at"] == done["completed_at"] + 3600
        files = list((tmp_path / "videos").iterdir())
        assert files
        service = client.app.state.service
        assert service.expire(now=done["completed_at"] + 3599) == 0  # not yet
        assert service.expire(now=done["completed_at"] + 3601) == 1
        assert_openai_error(client.get(f"/v1/videos/{video['id']}"), 404)
        assert not any(path.exists() for path in files)
    with pytest.raises(ValueError, match="keep_hours"):
        ServeConfig(keep_hours=0)
