"""The slow-client attack, for the tests and bench/slow_clients.py.

Many connections each send the headers of a multipart ``POST /recognize`` and then
trickle its body, one byte every few seconds, and meanwhile a prober times
``/health`` and a small ``/recognize``. Traffic goes to 127.0.0.1 only, and every
loop is bounded in time.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator

from tests.servers import HttpClient
from tests.servers import upload


class Trickle:
    """``count`` connections that trickle a request body to ``port``, one byte per connection every ``interval_s``."""

    def __init__(self, port: int, count: int, interval_s: float = 2.0, body_bytes: int = 100_000,
                 path: str = "/recognize") -> None:
        self.port, self.count, self.interval_s, self.body_bytes, self.path = port, count, interval_s, body_bytes, path
        self.answers: list[bytes] = []  # what the server sent back on each connection that it answered
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _headers(self) -> bytes:
        return (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {self.body_bytes}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
                '--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nmallory\r\n--xyz\r\n').encode()

    def _run(self) -> None:
        sockets = []
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self._headers())
            sockets.append(sock)
        try:
            while sockets and not self._stop.wait(self.interval_s):
                for sock in list(sockets):
                    try:
                        sock.sendall(b"a")
                        continue
                    except OSError:
                        pass  # the server closed it: collect what it said
                    sockets.remove(sock)
                    self._collect(sock)
        finally:
            for sock in sockets:
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    if sock.recv(1, socket.MSG_PEEK):
                        self._collect(sock)
                        continue
                sock.close()

    def _collect(self, sock: socket.socket) -> None:
        self.closed_by_server += 1
        sock.settimeout(1)
        with contextlib.suppress(OSError):
            self.answers.append(sock.recv(65536))
        sock.close()


class Prober:
    """Times ``/health`` and a ``/recognize`` of ``photo`` (None: ``/health`` only) in turn, every ``interval_s``,
    until stopped; failures count as ``timeout_s``."""

    def __init__(self, port: int, photo: bytes | None, timeout_s: float = 30, interval_s: float = 0.5) -> None:
        self.client, self.photo, self.timeout_s, self.interval_s = HttpClient(port), photo, timeout_s, interval_s
        self.health: list[float] = []
        self.recognize: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.timeout_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.health.append(self._time("GET", "/health", None))
            if self.photo is not None:
                self.recognize.append(self._time("POST", "/recognize", {"image": upload(self.photo, "small.jpg")}))
            self._stop.wait(self.interval_s)

    def _time(self, method: str, path: str, data: dict | None) -> float:
        started = time.perf_counter()
        try:
            response = self.client.request(method, path, data, timeout=self.timeout_s)
            if response.status_code != 200:
                self.failures.append(f"{path}: {response.status_code}")
        except OSError as error:
            self.failures.append(f"{path}: {error!r}")
            return self.timeout_s
        return time.perf_counter() - started


def summary(seconds: list[float]) -> str:
    if not seconds:
        return "no samples"
    return f"n={len(seconds)} p50={statistics.median(seconds):.3f}s max={max(seconds):.3f}s"


@contextlib.contextmanager
def attack(port: int, photo: bytes, connections: int, interval_s: float = 2.0,
           path: str = "/recognize") -> Iterator[tuple[Trickle, Prober]]:
    """Trickling connections to ``path`` and a prober against ``port`` for as long as the block runs."""
    with Trickle(port, connections, interval_s, path=path) as trickle:
        time.sleep(0.5)  # every connection is open and its headers sent
        with Prober(port, photo) as prober:
            yield trickle, prober
