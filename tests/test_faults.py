"""Faults: a worker killed mid-request, a full or read-only disk, and erasure that reaches the backup."""

from __future__ import annotations

import concurrent.futures
import errno
import os
import pathlib
import signal
import threading
import time

import pytest

from tests.conftest import TestClient
from tests.conftest import client_of
from tests.conftest import test_images
from tests.scenario import enroll
from tests.scenario import names
from tests.scenario import recognize
from tests.servers import upload


def test_worker_killed_mid_request(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="2", FACEAPI_THREADS="2")
    client = server.client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    victims = sorted(server.worker_pids())
    killed = threading.Event()
    answered = threading.Semaphore(0)  # one release per answer

    def traffic() -> list[tuple[bool, int]]:
        """(after the kill, status) of each request, until 3 requests after the kill were answered."""
        statuses: list[tuple[bool, int]] = []
        while sum(after for after, _ in statuses) < 3:
            after = killed.is_set()
            try:
                form = {"image": upload(test_images("obama3.jpg"))}
                statuses.append((after, server.client().post("/recognize", form).status_code))
            except OSError:  # the killed worker's connection
                statuses.append((after, -1))
            answered.release()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(traffic) for _ in range(4)]
        for _ in range(8):  # traffic is flowing on both workers' threads before the kill
            assert answered.acquire(timeout=120)
        os.kill(victims[0], signal.SIGKILL)
        killed.set()
        statuses = [status for future in futures for _, status in future.result()]
    assert statuses.count(200) >= len(statuses) - 4  # only requests on the killed worker may be lost
    assert [future.result()[-1][1] for future in futures] == [200] * 4  # each thread's last, after the kill
    deadline = time.monotonic() + 30
    while len(server.worker_pids()) < 2:
        assert time.monotonic() < deadline, "gunicorn did not replace the worker"
        time.sleep(0.2)
    assert victims[0] not in server.worker_pids()
    for _ in range(6):
        assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]
    assert client.get("/people").json["people"] == [{"name": "obama", "face_count": 1}]


@pytest.fixture
def pickle_client(tmp_path: pathlib.Path, engine) -> tuple[TestClient, pathlib.Path]:
    from faceapi.config import Settings

    path = tmp_path / "store" / "faces.pkl"
    return client_of(Settings(store_path=str(path), workers=1), engine), path


def test_disk_full_during_enroll(pickle_client, monkeypatch: pytest.MonkeyPatch) -> None:
    client, path = pickle_client
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    before = path.read_bytes()
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the fault, in the store's environment only
    response = enroll(client, "biden", "biden.jpg")
    assert response.status_code == 507 and response.json["error"]["code"] == "insufficient_storage"
    assert path.read_bytes() == before
    assert not list(path.parent.glob("*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)  # space is back
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    assert [p["name"] for p in client.get("/people").json["people"]] == ["biden", "obama"]


def test_read_only_store_directory(pickle_client, monkeypatch: pytest.MonkeyPatch) -> None:
    client, path = pickle_client
    assert enroll(client, "obama", "obama.jpg").status_code == 201

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "pwrite", read_only)
    response = enroll(client, "biden", "biden.jpg")
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    assert str(path.parent) not in response.get_data(as_text=True)  # the store's path stays in the log
    assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]  # reads still work
    monkeypatch.undo()
    assert enroll(client, "biden", "biden.jpg").status_code == 201


def test_delete_erases_from_the_backup_too(pickle_client) -> None:
    client, path = pickle_client
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    assert client.delete("/people/biden").status_code == 200
    for leftover in path.parent.iterdir():
        if leftover.suffix != ".lock":
            assert b"biden" not in leftover.read_bytes(), leftover
    assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]


def test_erasing_a_collection_erases_it_from_the_backup_too(pickle_client) -> None:
    client, path = pickle_client
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    for photo, name in (("biden.jpg", "biden"), ("obama2.jpg", "barack")):
        answer = client.post("/collections/class-7b/enroll", data={"name": name, "image": upload(test_images(photo))})
        assert answer.status_code == 201, answer.json
    erased = client.delete("/collections/class-7b")
    assert erased.status_code == 200 and erased.json == {"name": "class-7b", "deleted_faces": 2}
    for leftover in path.parent.iterdir():
        if leftover.suffix != ".lock":
            data = leftover.read_bytes()
            assert b"class-7b" not in data and b"biden" not in data and b"barack" not in data, leftover
    assert client.get("/collections").json["collections"] == [
        {"name": "default", "person_count": 1, "face_count": 1}]
    assert client.delete("/collections/class-7b").json["error"]["code"] == "unknown_collection"
