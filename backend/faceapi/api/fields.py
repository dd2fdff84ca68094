"""Reading request fields: one reader per kind of field, each answering 400 with a clear code.

Fields come from the multipart form or the query string, or from a JSON body for the
endpoints that take one; the readers below accept both, so each endpoint reads its
fields the same way whatever the body.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import math
import unicodedata
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import numpy as np
from flask import request
from werkzeug.datastructures import FileStorage

from faceapi.config import Settings
from faceapi.errors import InvalidRequest
from faceapi.matching import ENCODING_WIDTH
from faceapi.scanning import DETECTORS

MAX_NAME_LENGTH = 100
# /people/<name>/faces/<id> addresses one face, so a name cannot hold this.
FACES_SEGMENT = "/faces/"
MAX_EXTERNAL_ID_LENGTH = 200
MAX_MIN_FACE_PX = 100_000
MAX_ENCODINGS = 100
# Real encodings stay within +-1; the bound keeps float32 storage finite.
MAX_ENCODING_VALUE = 10.0

Number = TypeVar("Number", int, float)


def json_body() -> dict[str, Any] | None:
    """The request's JSON object, None if the body is not JSON; 400 ``invalid_json`` if it is broken."""
    if not request.is_json:
        return None
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's recursion allows; silent=True catches only ValueError
        raise InvalidRequest("invalid_json", "the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_json", "the body must be a JSON object")
    return body


def raw_field(field: str) -> Any:
    """A field from the JSON body, else the form or the query string; None when absent.

    A field given twice, or given empty, is 400 ``invalid_<field>``: which value was meant is unknown.
    """
    body = json_body()
    if body is None:
        values = request.values.getlist(field)
        if len(values) > 1 or values == [""]:
            raise InvalidRequest(f"invalid_{field}", f"send {field} once, with a value", field=field)
        return values[0] if values else None
    if field in body and body[field] is None:
        raise InvalidRequest(f"invalid_{field}", f"{field} must not be null; leave it out instead", field=field)
    return body.get(field, request.args.get(field))


def read_name() -> str:
    """Field ``name``: a person's name (see `valid_name`); 400 ``missing_name`` or ``invalid_name``."""
    raw = raw_field("name")
    if raw is None:
        raise InvalidRequest("missing_name", "send the person's name as field 'name'", field="name")
    try:
        return valid_name(raw, "invalid_name")
    except InvalidRequest as error:
        raise InvalidRequest(error.code, error.message, field="name") from None


def valid_name(raw: Any, code: str) -> str:
    """``raw`` as a person's name (1-100 characters once trimmed, no control or invisible format
    characters, no `FACES_SEGMENT`), or 400 ``code`` saying what is wrong with it."""
    if not isinstance(raw, str):
        raise InvalidRequest(code, "the name must be a string")
    name = raw.strip()
    if not name:
        raise InvalidRequest(code, "the name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(code, f"the name must be at most {MAX_NAME_LENGTH} characters")
    if _has_control_characters(name):
        raise InvalidRequest(code, "the name must not contain control or invisible format characters")
    if not addressable(name):
        raise InvalidRequest(code, f"the name must not contain {FACES_SEGMENT!r} nor end with "
                                   f"{FACES_SEGMENT.rstrip('/')!r}: the URLs of a person's faces put it after the name")
    return name


def addressable(name: str) -> bool:
    """``name`` can be enrolled, and so be found from a URL: no control characters, and a face's URL
    (``/people/<name>/faces/<id>``) splits at the end of the name, not inside it."""
    return not _has_control_characters(name) and (name + FACES_SEGMENT).find(FACES_SEGMENT) == len(name)


def valid_external_id(raw: Any, code: str = "invalid_external_id") -> str | None:
    """A client's own reference for a face: None, or 1-200 characters without control characters."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_EXTERNAL_ID_LENGTH \
            or _has_control_characters(raw):
        raise InvalidRequest(code, f"an external_id must be 1 to {MAX_EXTERNAL_ID_LENGTH} printable characters")
    return raw


def read_false_match_rate() -> float | None:
    return read_number("false_match_rate", float, lambda value: math.isfinite(value) and 0 < value < 1,
                       "false_match_rate must be a number greater than 0 and less than 1")


def read_tolerance() -> float | None:
    return read_number("tolerance", float, lambda value: math.isfinite(value) and 0 < value <= 1,
                       "tolerance must be a number greater than 0 and at most 1")


def read_min_face_px() -> int | None:
    return read_number("min_face_px", int, lambda value: 1 <= value <= MAX_MIN_FACE_PX,
                       f"min_face_px must be a whole number of pixels from 1 to {MAX_MIN_FACE_PX}")


def read_count(field: str, largest: int) -> int | None:
    """An optional whole number from 1 to ``largest`` (``top_k``, ``max_faces``, ``limit``)."""
    return read_number(field, int, lambda value: 1 <= value <= largest,
                       f"{field} must be a whole number from 1 to {largest}")


def read_number(field: str, parse: Callable[[str], Number], valid: Callable[[Number], bool],
                message: str) -> Number | None:
    """Optional field ``field``: None if absent, else 400 ``invalid_<field>`` unless valid."""
    raw = raw_field(field)
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(raw)
        value = parse(raw) if isinstance(raw, str) else _exact(raw, parse)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"invalid_{field}", message, field=field) from None
    if not valid(value):
        raise InvalidRequest(f"invalid_{field}", message, field=field)
    return value


def read_flag(field: str) -> bool:
    """An optional yes/no field: JSON true or false, or the form text ``true`` or ``false``; absent is False."""
    raw = raw_field(field)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if raw in ("true", "false"):
        return raw == "true"
    raise InvalidRequest(f"invalid_{field}", f"{field} must be true or false", field=field)


def read_cursor(field: str = "cursor") -> str | None:
    """The name a page starts after, from the opaque ``next`` cursor of the previous page."""
    raw = request.args.get(field)
    if raw is None or raw == "":
        return None
    try:
        after = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = None
    if after is None or _has_control_characters(after):  # a cursor holds an enrolled name, which has none
        raise InvalidRequest("invalid_cursor", "cursor must be the 'next' value of a previous page", field=field)
    return after


def cursor_after(name: str) -> str:
    """The cursor of the page that follows ``name``."""
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def uploads(field: str, largest: int) -> list[FileStorage]:
    """One to ``largest`` files of multipart field ``field``."""
    files = request.files.getlist(field)
    if not files:
        raise InvalidRequest("missing_image", f"send the image as multipart field '{field}'", field=field)
    if len(files) > largest:
        raise InvalidRequest("too_many_images", f"send at most {largest} image(s) as field '{field}'", field=field)
    return files


def read_encodings(raw: Any, largest: int = MAX_ENCODINGS) -> np.ndarray:
    """A list of 1 to ``largest`` encodings (each 128 finite numbers) as a ``(n, 128)`` float64 array.

    A bad one is 400 ``invalid_encoding`` with its ``index``.
    """
    if not isinstance(raw, list) or not 1 <= len(raw) <= largest:
        raise InvalidRequest("invalid_encoding", f"encodings must be a list of 1 to {largest} encodings",
                             field="encodings")
    for index, encoding in enumerate(raw):
        problem = encoding_problem(encoding)
        if problem:
            raise InvalidRequest("invalid_encoding", f"encodings[{index}] {problem}", field="encodings", index=index)
    return np.array(raw, dtype=np.float64).reshape(-1, ENCODING_WIDTH)


def encoding_problem(encoding: Any) -> str | None:
    if not isinstance(encoding, list) or len(encoding) != ENCODING_WIDTH:
        return f"must be a list of {ENCODING_WIDTH} numbers"
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in encoding):
        return "must hold numbers only"
    if not all(math.isfinite(value) and abs(value) <= MAX_ENCODING_VALUE for value in encoding):
        return f"must hold finite numbers within +-{MAX_ENCODING_VALUE:g}"
    return None


def _exact(raw: int | float, parse: Callable[[str], Number]) -> Number:
    """A JSON number as ``parse``'s type; a fraction where a whole number is due is an error."""
    if parse is int and (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError(raw)
    return parse(raw)  # type: ignore[arg-type]


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char).startswith("C") for char in text)


# Each request field, declared once: its OpenAPI schema and its reader. Endpoints list the ones they
# take with `accepts`, which reads them for the view and is what api/contract.py documents.

Schema = dict[str, Any]
MOST_FACES = 1000  # the largest max_faces
MAX_TOP_K = 100
MAX_ENROLL_IMAGES = 10
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Field:
    """A request field: its name, its OpenAPI schema, and its reader.

    :param read: the field's value from the current request, None when absent; 400 when invalid.
    :param missing: the error when an endpoint requires the field and it is absent: (code, message).
    """

    name: str
    schema: Schema
    read: Callable[[], Any]
    missing: tuple[str, str] | None = None

    def required(self, value: Any) -> Any:
        """``value``, or the field's 400 when it is None."""
        if value is None:
            code, message = self.missing or (f"missing_{self.name}", f"send field '{self.name}'")
            raise InvalidRequest(code, message, field=self.name)
        return value


@dataclasses.dataclass(frozen=True)
class Accepts:
    """The fields one endpoint takes: from a multipart ``form``, a ``json`` body, and the ``query`` string."""

    form: tuple[Field, ...] = ()
    json: tuple[Field, ...] = ()
    query: tuple[Field, ...] = ()
    required: frozenset[str] = frozenset()  # required in whichever body declares them

    def read(self) -> dict[str, Any]:
        """Every field of the body the request sent (JSON or form) and of the query, in declared order."""
        body_fields = self.json if json_body() is not None else self.form
        values = {}
        for field in (*self.query, *body_fields):
            value = field.read()
            values[field.name] = field.required(value) if field.name in self.required else value
        return values


def accepts(*, form: tuple[Field, ...] = (), json: tuple[Field, ...] = (), query: tuple[Field, ...] = (),
            required: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a view's fields: it is called with them read, as a dict (absent ones None), then its path's values."""
    declared = Accepts(form, json, query, frozenset(required))

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(**path: Any) -> Any:
            return view(declared.read(), **path)

        wrapper.accepts = declared  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _upload(field: str, largest: int = 1) -> Callable[[], Any]:
    def read() -> Any:
        files = request.files.getlist(field)
        if not files:
            return None
        return uploads(field, largest) if largest > 1 else uploads(field, 1)[0]
    return read


def _optional(raw: Any, read: Callable[[Any], Any]) -> Any:
    return None if raw is None else read(raw)


def _optional_name() -> str | None:
    return None if raw_field("name") is None else read_name()


def _mode() -> str | None:
    mode = raw_field("mode")
    if mode is not None and mode not in ("merge", "replace"):
        raise InvalidRequest("invalid_mode", "mode must be merge or replace", field="mode")
    return mode


def _import_file() -> FileStorage | None:
    files = request.files.getlist("file")
    if len(files) > 1:
        raise InvalidRequest("missing_file", "send one export as multipart field 'file'", field="file")
    return files[0] if files else None


def _default(setting: str) -> Any:
    return next(field.default for field in dataclasses.fields(Settings) if field.name == setting)


_BINARY: Schema = {"type": "string", "format": "binary"}
_MISSING_IMAGE = "send the image as multipart field '{}'"

IMAGE = Field("image", _BINARY, _upload("image"), ("missing_image", _MISSING_IMAGE.format("image")))
IMAGE_A = Field("image_a", _BINARY, _upload("image_a"), ("missing_image", _MISSING_IMAGE.format("image_a")))
IMAGE_B = Field("image_b", _BINARY, _upload("image_b"), ("missing_image", _MISSING_IMAGE.format("image_b")))
IMAGES = Field("image", {"type": "array", "items": _BINARY, "maxItems": MAX_ENROLL_IMAGES},
               _upload("image", MAX_ENROLL_IMAGES), ("missing_image", _MISSING_IMAGE.format("image")))
NAME = Field("name", {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}, _optional_name,
             ("missing_name", "send the person's name as field 'name'"))
MIN_FACE_PX = Field("min_face_px", {
    "type": "integer", "minimum": 1, "maximum": MAX_MIN_FACE_PX,
    "description": "smallest face to find, in pixels of the uploaded image (default FACEAPI_MIN_FACE_PX)"},
    read_min_face_px)
MAX_FACES = Field("max_faces", {"type": "integer", "minimum": 1, "maximum": MOST_FACES,
                                      "description": "keep the largest faces only"},
                  lambda: read_count("max_faces", MOST_FACES))
TOLERANCE = Field("tolerance", {
    "type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1,
    "description": "the plain rule: the largest distance that still counts as a match, whatever the gallery's "
                   "size (default FACEAPI_TOLERANCE, unset: the open-set rule; /verify: 0.6)"},
    read_tolerance)
FALSE_MATCH_RATE = Field("false_match_rate", {
    "type": "number", "exclusiveMinimum": True, "minimum": 0, "exclusiveMaximum": True, "maximum": 1,
    "description": "the share of strangers accepted being given a name, for this gallery's size "
                   f"(default FACEAPI_FALSE_MATCH_RATE, {_default('false_match_rate')}); ignored with tolerance"},
    read_false_match_rate)
TOP_K = Field("top_k", {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K,
                        "description": "add the nearest distinct people to each face"},
              lambda: read_count("top_k", MAX_TOP_K))
LANDMARKS = Field("landmarks", {"type": "boolean", "default": False}, lambda: read_flag("landmarks"))
LARGEST = Field("largest", {"type": "boolean", "default": False}, lambda: read_flag("largest"))
MERGE = Field("merge", {"type": "boolean", "default": False}, lambda: read_flag("merge"))
ENCODINGS = Field("encodings", {"type": "array", "minItems": 1, "maxItems": MAX_ENCODINGS,
                                "items": {"$ref": "#/components/schemas/Encoding"}},
                  lambda: _optional(raw_field("encodings"), read_encodings),
                  ("invalid_encoding", f"encodings must be a list of 1 to {MAX_ENCODINGS} encodings"))
EXTERNAL_ID = Field("external_id", {"type": "array", "items": {"type": "string"}},
                    lambda: request.form.getlist("external_id") or None)
EXTERNAL_IDS = Field("external_ids", {"type": "array", "items": {"type": "string", "nullable": True}},
                     lambda: raw_field("external_ids"))
LIMIT = Field("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
              lambda: read_count("limit", MAX_PAGE_SIZE))
CURSOR = Field("cursor", {"type": "string"}, read_cursor)
MODE = Field("mode", {"type": "string", "enum": ["merge", "replace"], "default": "merge"}, _mode)
FILE = Field("file", _BINARY, _import_file, ("missing_file", "send one export as multipart field 'file'"))

def _detector() -> str | None:
    raw = raw_field("detector")
    if raw is not None and raw not in DETECTORS:
        raise InvalidRequest("invalid_detector", f"detector must be one of {', '.join(DETECTORS)}", field="detector")
    return raw


DETECTOR = Field("detector", {
    "type": "string", "enum": list(DETECTORS),
    "description": "yunet (small, turned and partly hidden faces; fast), hog (frontal faces) or cnn (dlib's CNN; "
                   "slowest); "
                   f"default FACEAPI_DETECTOR, {_default('detector')}"}, _detector)

# The fields of every endpoint that detects faces in an uploaded image: the pipeline takes them as keywords.
DETECTION = (MIN_FACE_PX, DETECTOR)
