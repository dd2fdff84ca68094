"""The ``faceapi`` command against a real gunicorn: a folder enrolled with refusals explained, resumed
without duplicates, with an API key; export and import."""

from __future__ import annotations

import http.server
import json
import pathlib
import socket
import subprocess
import sys
import threading

from tests.photos import png_bytes
from tests.servers import FACES

TRAIN = FACES / "examples/knn_examples/train"
FACEAPI = str(pathlib.Path(sys.executable).with_name("faceapi"))


def _folder(root: pathlib.Path) -> pathlib.Path:
    """knn_examples/train's layout (one sub-folder per person), plus three images that must be refused."""
    folder = root / "people"
    for person in TRAIN.iterdir():
        (folder / person.name).mkdir(parents=True)
        for photo in person.iterdir():
            (folder / person.name / photo.name).symlink_to(photo)
    (folder / "obama" / "group.jpg").symlink_to(FACES / "examples/two_people.jpg")
    (folder / "obama" / "tiny.jpg").symlink_to(FACES / "examples/obama-240p.jpg")
    (folder / "biden" / "blank.png").write_bytes(png_bytes())
    (folder / "biden" / "notes.txt").write_text("not an image: left alone")
    return folder


def _run(*args: str, key: str | None = None) -> subprocess.CompletedProcess:
    extra = ["--api-key", key] if key else []
    return subprocess.run([FACEAPI, *args, *extra], capture_output=True, text=True, timeout=300)


def test_enroll_dir_is_resumable_and_explains_refusals(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    server = gunicorn_factory(API_KEYS="letmein")
    url = f"http://127.0.0.1:{server.port}"
    folder = _folder(tmp_path)
    denied = _run("enroll-dir", str(folder), "--url", url)
    assert denied.returncode == 2 and "API key" in denied.stderr
    first = _run("enroll-dir", str(folder), "--url", url, key="letmein")
    assert first.returncode == 1, first.stderr  # some images were refused
    assert "enrolled 9, already enrolled 0, refused 3" in first.stdout
    assert "refused obama/group.jpg: multiple_faces" in first.stdout
    assert "refused obama/tiny.jpg: face_too_small" in first.stdout
    assert "refused biden/blank.png: no_face" in first.stdout
    assert "image/s" in first.stderr or "it/s" in first.stderr or "100%" in first.stderr  # the progress bar
    people = {p["name"]: p["face_count"] for p in server.client().request(
        "GET", "/people", headers={"X-API-Key": "letmein"}).json["people"]}
    assert people == {"alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "obama": 2, "rose_leslie": 2}
    (folder / "alex_lacamoire" / "second.png").symlink_to(FACES / "examples/alex-lacamoire.png")
    second = _run("enroll-dir", str(folder), "--url", url, key="letmein")
    assert "enrolled 1, already enrolled 9, refused 3" in second.stdout, second.stdout
    people = {p["name"]: p["face_count"] for p in server.client().request(
        "GET", "/people", headers={"X-API-Key": "letmein"}).json["people"]}
    assert people["alex_lacamoire"] == 2 and sum(people.values()) == 10


def test_export_and_import(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    source = gunicorn_factory("source")
    target = gunicorn_factory("target", FACEAPI_STORE_PATH=str(tmp_path / "target.pkl"))
    folder = _folder(tmp_path)
    assert _run("enroll-dir", str(folder), "--url", f"http://127.0.0.1:{source.port}", "--quiet").returncode == 1
    # 9 images enrolled in fewer requests: a person's images go 4 to a request (one by one after a refusal).
    assert source.log().count("POST /enroll 201") < 9
    exported = tmp_path / "export.json"
    assert _run("export", str(exported), "--url", f"http://127.0.0.1:{source.port}").returncode == 0
    assert len(json.loads(exported.read_text())["people"]) == 5
    loaded = _run("import", str(exported), "--url", f"http://127.0.0.1:{target.port}", "--mode", "replace")
    assert loaded.returncode == 0 and "9 faces of 5 people in the file, 9 added" in loaded.stdout, loaded.stderr
    assert target.client().get("/people").json == source.client().get("/people").json
    unreachable = _run("export", str(exported), "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def test_enroll_dir_can_choose_the_detector(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    server = gunicorn_factory()
    url = f"http://127.0.0.1:{server.port}"
    folder = tmp_path / "people"
    (folder / "obama").mkdir(parents=True)
    (folder / "obama" / "obama.jpg").symlink_to(FACES / "tests/test_images/obama.jpg")
    bad = _run("enroll-dir", str(folder), "--url", url, "--detector", "mmod")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    done = _run("enroll-dir", str(folder), "--url", url, "--detector", "cnn")
    assert done.returncode == 0 and "enrolled 1" in done.stdout, done.stdout + done.stderr
    assert "POST /enroll 201" in server.log()


def test_every_command_works_in_a_collection(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    """--collection, with a key of that collection only: enroll-dir, export and import stay in it; another
    collection's key is refused, and the default collection is untouched."""
    server = gunicorn_factory(API_KEYS="admin, teacher collections=class-3a|class-3b")
    url = f"http://127.0.0.1:{server.port}"
    folder = _folder(tmp_path)
    enrolled = _run("enroll-dir", str(folder), "--url", url, "--collection", "class-3a", "--quiet", key="teacher")
    assert enrolled.returncode == 1 and "enrolled 9, already enrolled 0, refused 3" in enrolled.stdout
    exported = tmp_path / "class-3a.json"
    assert _run("export", str(exported), "--url", url, "--collection", "class-3a", key="teacher").returncode == 0
    assert json.loads(exported.read_text())["collection"] == "class-3a"
    loaded = _run("import", str(exported), "--url", url, "--collection", "class-3b", key="teacher")
    assert loaded.returncode == 0 and "9 added" in loaded.stdout, loaded.stderr
    refused = _run("import", str(exported), "--url", url, "--collection", "class-4", key="teacher")
    assert refused.returncode == 2 and "may not" in refused.stderr
    admin = {"X-API-Key": "admin"}
    assert server.client().request("GET", "/collections", headers=admin).json["collections"] == [
        {"name": "class-3a", "person_count": 5, "face_count": 9},
        {"name": "class-3b", "person_count": 5, "face_count": 9}]


class _DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Promises a large export, sends a little of it, then drops the connection."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b'{"format": "faceapi-export", "people": [')
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


def test_an_export_cut_off_keeps_the_previous_file_and_says_why(tmp_path: pathlib.Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        previous = tmp_path / "faces.json"
        previous.write_text('{"an": "earlier export"}')
        result = _run("export", str(previous), "--url", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2 and "dropped" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert previous.read_text() == '{"an": "earlier export"}'
    assert [path.name for path in tmp_path.iterdir()] == ["faces.json"]  # no partial file left
