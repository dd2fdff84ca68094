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
from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

from faceapi.imaging import ImageTooLarge
from faceapi.imaging import UnreadableImage
from faceapi.requestlog import current_request_id
from faceapi.store import NameTaken
from faceapi.store import StoreError
from faceapi.store import StoreFull
from faceapi.store import UnknownCollection
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson

log = logging.getLogger(__name__)


class InvalidRequest(Exception):
    """The request is malformed: a field is missing or out of range (400 unless told).

    ``details`` go into the error body beside the code: ``field`` (which request field
    is at fault) and ``index`` (which item of a list field).
    """

    def __init__(self, code: str, message: str, status: int = 400, **details: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details


# Domain exception -> (HTTP status, machine code). The exception's text is the message.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UnreadableImage: (415, "unsupported_image"),
    ImageTooLarge: (413, "image_too_large"),
    UnknownPerson: (404, "unknown_person"),
    UnknownFace: (404, "unknown_face"),
    UnknownCollection: (404, "unknown_collection"),
    NameTaken: (409, "name_taken"),
    StoreFull: (507, "insufficient_storage"),
    StoreError: (503, "store_unavailable"),  # includes StoreUnavailable: the database is down
}

# Messages for exceptions whose text is only the key they were raised with.
_DOMAIN_MESSAGES = {
    UnknownPerson: lambda error: f"no person named {error.args[0]!r} is enrolled",
    UnknownFace: lambda error: f"that person has no face with id {error.args[0]!r}",
    UnknownCollection: lambda error: f"no collection named {error.args[0]!r} has people",
    NameTaken: lambda error: f"{error.args[0]!r} is enrolled already; send \"merge\": true to merge the two",
    # A store's own text names its file or its database's host: logged, never sent (/ready is open to anyone).
    StoreFull: lambda error: "the store has no space left; nothing was changed, and the error has been logged",
    StoreError: lambda error: "the store cannot be read or written now; the error has been logged",
}

# Methods every route answers, not worth naming in a 405's message.
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})

# Codes for HTTP errors whose Werkzeug name reads badly as a code.
_HTTP_CODES = {401: "unauthorized", 413: "upload_too_large", 415: "unsupported_media_type"}


def error_body(code: str, message: str, request_id: str | None,
               **details: str | int) -> dict[str, dict[str, str | int | None]]:
    """The one error shape; ``request_id`` matches the request's log line, for reports."""
    return {"error": {"code": code, "message": message, "request_id": request_id, **details}}


def error_response(status: int, code: str, message: str, **details: str | int) -> tuple[Response, int]:
    """The one error body, as a Flask response with ``status``."""
    return jsonify(error_body(code, message, current_request_id(), **details)), status


def init_app(app: Flask) -> None:
    """Register the JSON handlers on ``app``."""
    app.register_error_handler(InvalidRequest, _handle_invalid_request)
    for exception_type in DOMAIN_ERRORS:
        app.register_error_handler(exception_type, _handle_domain_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(InternalServerError, _handle_internal_error)


def _handle_invalid_request(error: InvalidRequest) -> tuple[Response, int]:
    return error_response(error.status, error.code, error.message, **error.details)


def _handle_domain_error(error: Exception) -> tuple[Response, int]:
    status, code = next(DOMAIN_ERRORS[cls] for cls in type(error).__mro__ if cls in DOMAIN_ERRORS)
    if status >= 500:
        log.error("%s: %s", code, error)
    message = next((_DOMAIN_MESSAGES[cls] for cls in type(error).__mro__ if cls in _DOMAIN_MESSAGES), str)
    return error_response(status, code, message(error))


def _handle_http_exception(error: HTTPException) -> Response:
    response = error.get_response()
    status = error.code or 500
    code = _HTTP_CODES.get(status, (error.name or "error").lower().replace(" ", "_"))
    body, _ = error_response(status, code, _http_message(error, response))
    response.set_data(body.get_data())
    response.content_type = "application/json"
    return response


def _handle_internal_error(error: InternalServerError) -> tuple[Response, int]:
    original = getattr(error, "original_exception", None)
    log.error("unhandled error", exc_info=original or error)
    return error_response(500, "internal_error", "the server failed to handle the request; it has been logged")


def _http_message(error: HTTPException, response: Response) -> str:
    """Our sentence for the framework's stock ones (404, 405, 413); others keep their description."""
    if error.code == 404:
        return f"there is no endpoint at {request.path}; /openapi.json lists them all"
    if error.code == 405:
        allowed = [method for method in response.headers.get("Allow", "").split(", ") if method not in _IMPLICIT]
        return f"{request.path} does not take {request.method}; it takes {', '.join(allowed)}"
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return f"the request body is over the upload limit of {limit} bytes (FACEAPI_UPLOAD_LIMIT_BYTES)"
    return error.description or error.name
