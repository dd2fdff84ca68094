"""Real servers for tests and benchmarks: gunicorn in a subprocess, and a small HTTP client for it."""

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
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.test import encode_multipart

ROOT = pathlib.Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"


def upload(source: pathlib.Path | bytes, filename: str | None = None) -> FileStorage:
    """A multipart file for either client: a photo's bytes, or raw bytes."""
    data = source.read_bytes() if isinstance(source, pathlib.Path) else source
    if filename is None:
        filename = source.name if isinstance(source, pathlib.Path) else "upload.jpg"
    return FileStorage(io.BytesIO(data), filename=filename, content_type="application/octet-stream")


def encode_form(data: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart body and its content type; a list value repeats the field."""
    fields = MultiDict()
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            fields.add(key, item)
    boundary, body = encode_multipart(fields)
    return body, f"multipart/form-data; boundary={boundary}"


class Response:
    """A status and decoded JSON body, whichever transport produced them."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers
        self.body = body
        is_json = headers.get("Content-Type", "application/json").startswith("application/json")
        self.json: Any = json.loads(body) if body and is_json else None


class HttpClient:
    """A minimal client for a real server on 127.0.0.1, with the Flask test client's call shape."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, data: dict[str, Any] | None = None, timeout: float = 60,
                headers: dict[str, str] | None = None) -> Response:
        body = b""
        headers = dict(headers or {})
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

    def __init__(self, log_path: pathlib.Path, env: dict[str, str], args: list[str] | None = None,
                 ready_path: str = "/ready", launcher: list[str] | None = None) -> None:
        self.port = free_port()
        self.args = args or ["--config", "gunicorn.conf.py"]
        self.ready_path = ready_path
        self.launcher = launcher or []  # e.g. ["taskset", "-c", "0"]
        self.log_path = log_path
        self.env = {**os.environ, "PORT": str(self.port), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GunicornServer:
        gunicorn = pathlib.Path(sys.executable).with_name("gunicorn")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*self.launcher, str(gunicorn), *self.args],
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
                if self.client().get(self.ready_path).status_code == 200 and self._all_workers_up():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{self.log()}")

    def _all_workers_up(self) -> bool:
        """One worker answering is not all of them: wait for WEB_CONCURRENCY (when the test sets it)."""
        expected = self.env.get("WEB_CONCURRENCY")
        return expected is None or "--workers" in self.args or len(self.worker_pids()) >= int(expected)

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


