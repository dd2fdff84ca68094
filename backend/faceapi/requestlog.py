"""One log line per request, and a request id that ties a response to its log line.

The line holds the request id, method, route, status and duration; never bodies,
image bytes, encodings, query strings or headers (API keys travel in headers).
The route is the URL rule with its parameters masked (``DELETE /people/<name>``),
since a path can hold a person's name, which must not outlive their erasure in a
log; a request that matched no route is logged as ``(no route)``.
The id is the client's ``X-Request-ID`` when it is a short safe token, else a new
one; it is returned in the ``X-Request-ID`` header and in every error body.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask
from flask import Response
from flask import g
from flask import request

log = logging.getLogger("faceapi.access")

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER = "X-Request-ID"


def init_app(app: Flask) -> None:
    """Tag and log every request of ``app``."""
    app.before_request(_start)
    app.after_request(_finish)


def current_request_id() -> str | None:
    """This request's id (None outside a request, or before `_start` ran)."""
    return g.get("request_id")


def _start() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def elapsed_s() -> float | None:
    """Seconds since this request started (None if `_start` did not run for it)."""
    started = g.get("request_started")
    return None if started is None else time.perf_counter() - started


def _finish(response: Response) -> Response:
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[HEADER] = request_id
    duration_ms = (elapsed_s() or 0.0) * 1000
    log.info("%s %s %s %d %.1fms", request_id, request.method, masked_route(), response.status_code, duration_ms)
    return response


def masked_route() -> str:
    """The matched URL rule, parameters as ``<name>`` placeholders; ``(no route)`` when none matched."""
    rule = request.url_rule
    return _CONVERTER.sub("<", rule.rule) if rule is not None else "(no route)"


_CONVERTER = re.compile(r"<\w+:")  # "<path:name>" -> "<name>"
