"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Domain exceptions are raised by the modules that detect them and know nothing of
HTTP; the table below gives each its status and machine code. HTTP errors raised
by Flask and Werkzeug (404, 405, 413, ...) keep their status and headers and get
the same body. Unexpected exceptions are logged and answered with a generic 500
that reveals nothing of the code.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from flask import jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

from faceapi.engine import MultipleFaces
from faceapi.engine import NoFaceFound
from faceapi.imaging import ImageTooLarge
from faceapi.imaging import UnreadableImage
from faceapi.requestlog import current_request_id
from faceapi.store import StoreError
from faceapi.store import StoreFull
from faceapi.store import UnknownPerson

log = logging.getLogger(__name__)


class InvalidRequest(Exception):
    """The request is malformed: a field is missing or out of range (400 unless told)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# Domain exception -> (HTTP status, machine code). The exception's text is the message.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UnreadableImage: (415, "unsupported_image"),
    ImageTooLarge: (413, "image_too_large"),
    NoFaceFound: (422, "no_face"),
    MultipleFaces: (422, "multiple_faces"),
    UnknownPerson: (404, "unknown_person"),
    StoreFull: (507, "insufficient_storage"),
    StoreError: (503, "store_unavailable"),  # includes StoreUnavailable: the database is down
}

# Codes for HTTP errors whose Werkzeug name reads badly as a code.
_HTTP_CODES = {401: "unauthorized", 413: "upload_too_large", 415: "unsupported_media_type"}


def error_body(code: str, message: str, request_id: str | None) -> dict[str, dict[str, str | None]]:
    """The one error shape; ``request_id`` matches the request's log line, for reports."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    """The one error body, as a Flask response with ``status``."""
    return jsonify(error_body(code, message, current_request_id())), status


def init_app(app: Flask) -> None:
    """Register the JSON handlers on ``app``."""
    app.register_error_handler(InvalidRequest, _handle_invalid_request)
    for exception_type in DOMAIN_ERRORS:
        app.register_error_handler(exception_type, _handle_domain_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(InternalServerError, _handle_internal_error)


def _handle_invalid_request(error: InvalidRequest) -> tuple[Response, int]:
    return error_response(error.status, error.code, error.message)


def _handle_domain_error(error: Exception) -> tuple[Response, int]:
    status, code = next(DOMAIN_ERRORS[cls] for cls in type(error).__mro__ if cls in DOMAIN_ERRORS)
    if status >= 500:
        log.error("%s: %s", code, error)
    message = f"no person named {error.args[0]!r} is enrolled" if isinstance(error, UnknownPerson) else str(error)
    return error_response(status, code, message)


def _handle_http_exception(error: HTTPException) -> Response:
    response = error.get_response()
    status = error.code or 500
    code = _HTTP_CODES.get(status, (error.name or "error").lower().replace(" ", "_"))
    body, _ = error_response(status, code, error.description or error.name)
    response.set_data(body.get_data())
    response.content_type = "application/json"
    return response


def _handle_internal_error(error: InternalServerError) -> tuple[Response, int]:
    original = getattr(error, "original_exception", None)
    log.error("unhandled error", exc_info=original or error)
    return error_response(500, "internal_error", "the server failed to handle the request; it has been logged")
