"""The service under real gunicorn: several workers and threads, as deployed."""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys

from tests.conftest import face_photo
from tests.conftest import test_images
from tests.photos import phone_photo
from tests.scenario import enroll
from tests.scenario import names
from tests.scenario import run_labelled_scenario
from tests.servers import ROOT
from tests.servers import upload


def _metrics_dirs(pid: int) -> list[pathlib.Path]:
    """The metrics directories a gunicorn master with ``pid`` made (gunicorn.conf.py names them so)."""
    return list(pathlib.Path("/dev/shm").glob(f"faceapi-metrics-{pid}-*"))


def test_config_checks_and_failed_boots_leave_no_metrics_directory(tmp_path, gunicorn_factory) -> None:
    gunicorn = pathlib.Path(sys.executable).with_name("gunicorn")
    checked = subprocess.Popen([str(gunicorn), "--check-config", "--config", "gunicorn.conf.py"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = checked.communicate(timeout=120)
    assert checked.returncode == 0, output
    (tmp_path / "notes.txt").write_text("not a store")  # the app cannot load: the boot fails
    failed = subprocess.Popen([str(gunicorn), "--config", "gunicorn.conf.py"], cwd=ROOT, text=True,
                              env={**os.environ, "FACEAPI_STORE_PATH": str(tmp_path / "notes.txt")},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = failed.communicate(timeout=120)
    assert failed.returncode != 0 and "not a valid store file" in output, output
    server = gunicorn_factory()
    assert len(_metrics_dirs(server.process.pid)) == 1
    server.__exit__(None, None, None)
    for pid in (checked.pid, failed.pid, server.process.pid):
        assert _metrics_dirs(pid) == [], pid


def test_labelled_scenario_and_cross_worker_visibility(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="3", FACEAPI_THREADS="4")
    client = server.client()
    run_labelled_scenario(client)
    # Each request opens a new connection, so the kernel hands them to all three workers.
    assert enroll(client, "rose", "obama_partial_face.jpg").status_code == 201
    for _ in range(15):
        assert {p["name"] for p in client.get("/people").json["people"]} == {"obama", "rose"}
    assert client.delete("/people/rose").status_code == 200
    for _ in range(15):
        assert [p["name"] for p in client.get("/people").json["people"]] == ["obama"]


def test_concurrent_recognition_is_correct_and_no_worker_dies(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="2", FACEAPI_THREADS="4")
    client = server.client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    workers_before = server.worker_pids()
    cases = [
        (face_photo("examples/obama-480p.jpg").read_bytes(), ["obama"]),
        (face_photo("examples/obama-1080p.jpg").read_bytes(), ["obama"]),
        (face_photo("examples/two_people.jpg").read_bytes(), ["biden", "obama"]),
        (test_images("obama3.jpg").read_bytes(), ["obama"]),
        (test_images("biden.jpg").read_bytes(), ["biden"]),
        (phone_photo(), ["obama"]),
        (face_photo("examples/lin-manuel-miranda.png").read_bytes(), [None]),
    ]

    def ask(index: int) -> tuple[list[str | None], list[str | None]]:
        data, expected = cases[index % len(cases)]
        response = server.client().post("/recognize", data={"image": upload(data, "photo.jpg")})
        return names(response), expected

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(ask, range(48)))
    assert all(got == expected for got, expected in results), results
    assert server.worker_pids() == workers_before
    log = server.log()
    assert "SIGSEGV" not in log and "Worker exiting" not in log and "WORKER TIMEOUT" not in log


def test_log_never_holds_a_persons_name(gunicorn_factory) -> None:
    """Routes are logged with parameters masked, so an erased person's name does not live on in the log."""
    server = gunicorn_factory(WEB_CONCURRENCY="1")
    client = server.client()
    assert enroll(client, "Joe Biden", "biden.jpg").status_code == 201
    assert client.delete("/people/Joe%20Biden").status_code == 200
    assert client.delete("/people/Joe%20Biden").status_code == 404
    assert client.get("/people/Joe%20Biden").status_code == 404
    assert client.request("PUT", "/people/Joe%20Biden").status_code == 405
    log = server.log()
    assert " DELETE /people/<name> 200 " in log and " DELETE /people/<name> 404 " in log, log
    assert " GET /people/<name> 404 " in log and " PUT (no route) 405 " in log, log
    assert "Joe" not in log and "Biden" not in log, log
