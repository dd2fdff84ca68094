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
``FACEAPI_UPLOAD_LIMIT_BYTES`` gets a JSON 413 at once, and a malformed request
its JSON 4xx (`faceapi.intake` decides, with gunicorn's own parser). These
answers carry the app's CORS headers, so a page on another origin can read them.
Nothing a client sends can end the worker: any failure while receiving a request
closes that connection alone, and is logged once. Slow connections then
cost a socket and at most `SPOOL_IN_MEMORY_BYTES` each, up to gunicorn's
``worker_connections`` per worker. TLS and HTTP/2 connections (not used by this
service's config) are served as plain ``gthread`` serves them.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import selectors
import time
import traceback
import uuid
from functools import partial
from typing import Any

from flask_cors.core import get_cors_headers
from flask_cors.core import get_cors_options
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.datastructures import Headers

from faceapi.app import cors_options
from faceapi.config import process_settings
from faceapi.errors import error_body
from faceapi.intake import MALFORMED_REQUEST
from faceapi.intake import SPOOL_IN_MEMORY_BYTES
from faceapi.intake import Refusal
from faceapi.intake import RequestIntake
from faceapi.intake import Verdict

log = logging.getLogger("faceapi.access")

_READ_BYTES = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BufferingWorker(ThreadWorker):
    """``gthread`` with requests received whole in the event loop before a thread serves them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.settings = process_settings()
        self.request_timeout_s = self.settings.request_timeout_s
        self.max_body_bytes = self.settings.upload_limit_bytes
        self.buffering = not self.cfg.is_ssl and self.cfg.http2_cleartext == "off"
        # Connections still sending, oldest first (all share one timeout, so the order is the deadline's).
        self.intakes: collections.OrderedDict[TConn, tuple[RequestIntake, float]] = collections.OrderedDict()

    @functools.cached_property
    def cors(self) -> Any:
        """The app's CORS options (flask-cors' resolved form), for the answers given without the app."""
        return get_cors_options(self.wsgi, cors_options(self.settings))

    def enqueue_req(self, conn: TConn) -> None:
        """Start receiving the next request on ``conn``; a thread gets it once it is complete."""
        if not self.buffering:
            super().enqueue_req(conn)
            return
        intake = RequestIntake(self.max_body_bytes, self.cfg, conn.client)
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
            self._refuse(conn, Refusal(408, "Request Timeout", "request_timeout", message))

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
        """Feed ``data`` to the intake and act on its verdict; a failure here ends this connection only."""
        try:
            self._act(conn, intake, intake.feed(data))
        except Exception as error:  # noqa: BLE001 - whatever a client sends, the worker must live on
            where = traceback.extract_tb(error.__traceback__)[-1]
            # Type and place only: an exception's text may quote the request's bytes.
            log.error("receiving a request failed with %s at %s:%s; connection closed",
                      type(error).__name__, where.filename, where.lineno)
            if conn in self.intakes:
                self._refuse(conn, MALFORMED_REQUEST)
            else:  # it was being handed on: close it, as gunicorn does a connection it fails on
                self._close(conn)

    def _act(self, conn: TConn, intake: RequestIntake, verdict: Verdict) -> None:
        if verdict is Verdict.REFUSED:
            assert intake.refusal is not None
            self._refuse(conn, intake.refusal)
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
        super().enqueue_req(conn)

    def _refuse(self, conn: TConn, refusal: Refusal) -> None:
        """Answer an error in the service's JSON shape without involving the app, and close."""
        intake, started = self._forget(conn)
        request_id = uuid.uuid4().hex
        body = json.dumps(error_body(refusal.code, refusal.message, request_id)).encode()
        fields = {"Content-Type": "application/json", "Content-Length": str(len(body)), "X-Request-ID": request_id,
                  "Connection": "close"}
        fields.update(get_cors_headers(self.cors, Headers(intake.headers), intake.method))
        head = f"HTTP/1.1 {refusal.status} {refusal.reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        with contextlib.suppress(OSError):
            conn.sock.send(head.encode("latin-1") + b"\r\n" + body)  # small enough for the socket's send buffer
        log.info("%s %s (not received) %d %s %.1fms", request_id, intake.method or "-", refusal.status, refusal.code,
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
