"""gunicorn's threaded worker, made safe from slow clients by receiving each request whole first.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it is
readable, and that thread then reads the body as the client sends it. A client
that trickles its body holds the thread for as long as it likes, so a few dozen
slow connections hold every thread and the service stops answering, ``/health``
included. gunicorn's documentation says to put such workers behind a buffering
proxy; App Platform documents none, and local, VM and Docker hosts have none.

`BufferingWorker` does in its event loop what that proxy would: it reads each
request (header block and body) without blocking, into a `RequestIntake`, and
gives it to a thread only once it is complete, so a thread never waits on a
client. A request still incomplete after ``FACEAPI_REQUEST_TIMEOUT_S`` gets a
JSON 408 and is dropped before the app sees any of it; a declared body over
``FACEAPI_UPLOAD_LIMIT_BYTES`` gets a JSON 413 at once. Slow connections then
cost a socket and at most `SPOOL_IN_MEMORY_BYTES` each, up to gunicorn's
``worker_connections`` per worker. TLS and HTTP/2 connections (not used by this
service's config) are served as plain ``gthread`` serves them.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import selectors
import time
import uuid
from functools import partial

from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker

from faceapi.config import Settings
from faceapi.errors import error_body
from faceapi.intake import SPOOL_IN_MEMORY_BYTES
from faceapi.intake import RequestIntake
from faceapi.intake import Verdict

log = logging.getLogger("faceapi.access")

_READ_BYTES = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BufferingWorker(ThreadWorker):
    """``gthread`` with requests received whole in the event loop before a thread serves them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()
        self.request_timeout_s = settings.request_timeout_s
        self.max_body_bytes = settings.upload_limit_bytes
        self.buffering = not self.cfg.is_ssl and self.cfg.http2_cleartext == "off"
        # Connections still sending, oldest first (all share one timeout, so the order is the deadline's).
        self.intakes: collections.OrderedDict[TConn, tuple[RequestIntake, float]] = collections.OrderedDict()

    def enqueue_req(self, conn: TConn) -> None:
        """Start receiving the next request on ``conn``; a thread gets it once it is complete."""
        if not self.buffering or getattr(conn, "faceapi_received", False):
            conn.faceapi_received = False
            super().enqueue_req(conn)
            return
        intake = RequestIntake(self.max_body_bytes)
        self.intakes[conn] = (intake, time.monotonic())
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        # Bytes a previous request on this connection read ahead (pipelining) come first.
        early = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        if early:
            self._take(conn, intake, early)

    def murder_pending(self) -> None:
        """Also answer 408 to requests not complete within the timeout (run by the event loop every second)."""
        super().murder_pending()
        now = time.monotonic()
        while self.intakes:
            conn, (intake, started) = next(iter(self.intakes.items()))
            if now - started < self.request_timeout_s:
                break
            message = f"the request was not received within {self.request_timeout_s:g} s; nothing of it was processed"
            self._refuse(conn, 408, "Request Timeout", "request_timeout", message)

    def _on_readable(self, conn: TConn, _sock: object) -> None:
        try:
            data = conn.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._forget(conn)[0].close()
            self._close(conn)
            return
        self._take(conn, self.intakes[conn][0], data)

    def _take(self, conn: TConn, intake: RequestIntake, data: bytes) -> None:
        verdict = intake.feed(data)
        if verdict is Verdict.TOO_LARGE:
            message = f"the request body is over the limit of {self.max_body_bytes} bytes"
            self._refuse(conn, 413, "Content Too Large", "upload_too_large", message)
        elif verdict is Verdict.COMPLETE:
            self._dispatch(conn, intake)
        elif intake.expects_continue:
            intake.expects_continue = False
            with contextlib.suppress(OSError):
                conn.sock.send(_CONTINUE)

    def _dispatch(self, conn: TConn, intake: RequestIntake) -> None:
        """Hand the complete request to a thread: gunicorn's parser reads it from the spool."""
        self._forget(conn)
        conn.init()  # blocking socket and, on a new connection, its parser
        conn.parser.unreader = _SpoolUnreader(conn.sock, intake)
        conn.faceapi_received = True
        super().enqueue_req(conn)

    def _refuse(self, conn: TConn, status: int, reason: str, code: str, message: str) -> None:
        """Answer an error in the service's JSON shape without involving the app, and close."""
        intake, started = self._forget(conn)
        request_id = uuid.uuid4().hex
        body = json.dumps(error_body(code, message, request_id)).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Request-ID: {request_id}\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            conn.sock.send(head + body)  # small enough for the socket's send buffer
        log.info("%s %s (not received) %d %.1fms", request_id, intake.method or "-", status,
                 (time.monotonic() - started) * 1000)
        intake.close()
        self._close(conn)

    def _forget(self, conn: TConn) -> tuple[RequestIntake, float]:
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        return self.intakes.pop(conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()


class _SpoolUnreader(SocketUnreader):
    """gunicorn's socket reader, but serving a received request from its intake's spool first."""

    def __init__(self, sock: object, intake: RequestIntake) -> None:
        super().__init__(sock)
        self._intake: RequestIntake | None = intake
        intake.spool.seek(0)

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self._intake is not None:
            data = self._intake.spool.read(max(self.mxchunk, min(size_hint or 0, SPOOL_IN_MEMORY_BYTES)))
            if data:
                return data
            self._release()
        return super().chunk(size_hint)

    def take_buffered(self) -> bytes:
        data = super().take_buffered()
        if self._intake is not None:
            data += self._intake.spool.read()
            self._release()
        return data

    def _release(self) -> None:
        if self._intake is not None:
            self._intake.close()
            self._intake = None
