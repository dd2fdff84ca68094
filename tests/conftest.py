"""Shared fixtures: the labelled photos, one engine per session, apps, and real gunicorn servers."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.test import encode_multipart

from faceapi import create_app
from faceapi.config import Settings
from faceapi.engine import FaceEngine

ROOT = pathlib.Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"


def face_photo(relative: str) -> pathlib.Path:
    """A labelled photo from ../shared/faces (see its LABELS.md); never copied into the repo."""
    path = FACES / relative
    if not path.is_file():
        pytest.fail(f"missing test photo {path}: the tests need ../shared/faces beside the repository")
    return path


def upload(source: pathlib.Path | bytes, filename: str | None = None) -> FileStorage:
    """A multipart file for either client: a photo's bytes, or raw bytes."""
    data = source.read_bytes() if isinstance(source, pathlib.Path) else source
    if filename is None:
        filename = source.name if isinstance(source, pathlib.Path) else "upload.jpg"
    return FileStorage(io.BytesIO(data), filename=filename, content_type="application/octet-stream")


def test_images(name: str) -> pathlib.Path:
    return face_photo(f"tests/test_images/{name}")


test_images.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    """The engine with the service's default detection settings, loaded once."""
    return FaceEngine.load()


@pytest.fixture(scope="session")
def database_url() -> str:
    """The PostgreSQL server scripts/test provides. Missing, the run fails: a skipped backend is an untested one."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set: run the tests with ./scripts/test, which starts PostgreSQL")
    return url


@pytest.fixture
def pg_url(database_url: str) -> Iterator[str]:
    """A URL whose connections see only a fresh schema of this test's own."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in database_url else "?"
    yield f"{database_url}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["pickle", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """Each store backend in turn: a pickle file path, or a PostgreSQL URL."""
    if request.param == "pickle":
        return str(tmp_path / "store" / "faces.pkl")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def settings(store_location: str) -> Settings:
    if store_location.startswith("postgresql://"):
        return Settings(database_url=store_location, workers=1)
    return Settings(store_path=store_location, workers=1)


@pytest.fixture
def app(settings: Settings, engine: FaceEngine):
    return create_app(settings, engine=engine)


def encode_form(data: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart body and its content type; a list value repeats the field."""
    fields = MultiDict()
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            fields.add(key, item)
    boundary, body = encode_multipart(fields)
    return body, f"multipart/form-data; boundary={boundary}"


class TestClient:
    """Flask's test client, but forms are encoded in memory as for the real server.

    (Werkzeug's own encoder spools large test bodies to a temporary file it never closes.)
    """

    __test__ = False

    def __init__(self, flask_client: Any) -> None:
        self._client = flask_client

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            data, kwargs["content_type"] = encode_form(data)
        return self._client.post(path, data=data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app.test_client())


class Response:
    """A status and decoded JSON body, whichever transport produced them."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers
        self.json: Any = json.loads(body) if body else None


class HttpClient:
    """A minimal client for a real server on 127.0.0.1, with the Flask test client's call shape."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, data: dict[str, Any] | None = None, timeout: float = 60) -> Response:
        body = b""
        headers = {}
        if data is not None:
            body, headers["Content-Type"] = encode_form(data)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.read(), dict(response.getheaders()))
        finally:
            connection.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, Any]) -> Response:
        return self.request("POST", path, data)

    def delete(self, path: str) -> Response:
        return self.request("DELETE", path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """Real gunicorn with the project's gunicorn.conf.py, in its own process group."""

    def __init__(self, log_path: pathlib.Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "PORT": str(self.port), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GunicornServer:
        gunicorn = pathlib.Path(sys.executable).with_name("gunicorn")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(gunicorn), "--config", "gunicorn.conf.py"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.client().get("/ready").status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{self.log()}")

    def client(self) -> HttpClient:
        return HttpClient(self.port)

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        children = pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def gunicorn_factory(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Start real gunicorn servers; all are stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        def start(name: str = "server", **env: str) -> GunicornServer:
            env.setdefault("FACEAPI_STORE_PATH", str(tmp_path / "store" / "faces.pkl"))
            return stack.enter_context(GunicornServer(tmp_path / f"{name}.log", env))

        yield start
