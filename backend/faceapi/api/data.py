"""Moving enrollments in and out: ``GET /export`` streams a collection's, ``POST /import`` loads such a file.

The format is JSON, versioned, and never a pickle (docs in README, "Export format"):

    {"format": "faceapi-export", "version": 1, "model": "<the encoder's id>", "exported_at": "...Z",
     "collection": "<where it came from>",
     "people": [{"name": "...", "faces": [{"id": "...", "created_at": "...Z" | null,
                                           "external_id": "..." | null, "encoding": [128 numbers]}]}]}

An import is validated whole before anything is written, refuses encodings of another
model, and is one store step: ``merge`` adds faces whose ids are new to the collection,
``replace`` makes the collection hold exactly the file. A file may be imported into any
collection: ``collection`` in it says where it came from, not where it goes.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np
from flask import Blueprint
from flask import Response

from faceapi.api import fields
from faceapi.api.context import get_services
from faceapi.api.render import json_time
from faceapi.api.render import stored_face_json
from faceapi.errors import InvalidRequest
from faceapi.store import FaceRecord
from faceapi.store import utc_now

bp = Blueprint("data", __name__)

EXPORT_FORMAT = "faceapi-export"
EXPORT_VERSION = 1
_FACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@bp.get("/export")
def export(collection: str) -> Response:
    """Every person and face of the collection with its encoding, streamed one person at a time."""
    services = get_services()
    records = services.store.faces(collection=collection)
    header = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model": services.engine.model_id,
              "exported_at": json_time(utc_now()), "collection": collection}

    def stream() -> Iterator[str]:
        yield json.dumps(header)[:-1] + ', "people": ['
        for index, (name, faces) in enumerate(itertools.groupby(records, key=lambda record: record.name)):
            person = {"name": name, "faces": [_exported_face(face) for face in faces]}
            yield ("," if index else "") + json.dumps(person)
        yield "]}\n"

    return Response(stream(), mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="faceapi-export.json"'})


@bp.post("/import")
@fields.accepts(form=(fields.MODE, fields.FILE), required=("file",))
def import_file(values: dict[str, Any], collection: str) -> dict[str, Any]:
    """Load an export (multipart ``file``); ``mode`` is ``merge`` (the default) or ``replace``."""
    mode = values["mode"] or "merge"
    services = get_services()
    records, people = _parse_export(values["file"].read(), services.engine.model_id)
    added = services.store.import_faces(records, replace=mode == "replace", collection=collection)
    return {"mode": mode, "people": people, "faces": len(records), "added": added}


def _exported_face(face: FaceRecord) -> dict[str, Any]:
    return {**stored_face_json(face), "encoding": np.asarray(face.encoding, dtype=np.float64).tolist()}


def _parse_export(raw: bytes, model_id: str) -> tuple[list[FaceRecord], int]:
    """Every face of an export file, checked whole; and how many people it holds."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise _invalid("file", "the file is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise _invalid("file", f"the file is not a faceapi export (its \"format\" must be {EXPORT_FORMAT!r})")
    if document.get("version") != EXPORT_VERSION:
        raise _invalid("version", f"export version {document.get('version')!r} is not one this service reads "
                                  f"({EXPORT_VERSION})")
    if document.get("model") != model_id:
        raise InvalidRequest("foreign_model", f"the file holds encodings made by {document.get('model')!r}, not by "
                             f"this service's {model_id!r}; they cannot be compared", 422, field="model")
    people = document.get("people")
    if not isinstance(people, list):
        raise _invalid("people", "people must be a list")
    records: list[FaceRecord] = []
    names: set[str] = set()
    ids: set[str] = set()
    for index, person in enumerate(people):
        where = f"people[{index}]"
        if not isinstance(person, dict) or not isinstance(person.get("faces"), list) or not person["faces"]:
            raise _invalid(where, "each person must be an object with a non-empty list of faces")
        name = _checked(fields.valid_name, person.get("name"), f"{where}.name")
        if name in names:
            raise _invalid(f"{where}.name", f"{name!r} appears twice")
        names.add(name)
        for face_index, face in enumerate(person["faces"]):
            record = _record(name, face, f"{where}.faces[{face_index}]")
            if record.face_id in ids:
                raise _invalid(f"{where}.faces[{face_index}].id", f"face id {record.face_id!r} appears twice")
            ids.add(record.face_id)
            records.append(record)
    return records, len(names)


def _record(name: str, face: Any, where: str) -> FaceRecord:
    if not isinstance(face, dict):
        raise _invalid(where, "each face must be an object")
    face_id = face.get("id")
    if not isinstance(face_id, str) or not _FACE_ID.fullmatch(face_id):
        raise _invalid(f"{where}.id", "a face id is 1 to 64 letters, digits, '-' or '_'")
    problem = fields.encoding_problem(face.get("encoding"))
    if problem:
        raise _invalid(f"{where}.encoding", f"the encoding {problem}")
    external_id = _checked(fields.valid_external_id, face.get("external_id"), f"{where}.external_id")
    return FaceRecord(face_id, name, np.array(face["encoding"], dtype=np.float64),
                      _created_at(face.get("created_at"), f"{where}.created_at"), external_id)


def _created_at(raw: Any, where: str) -> datetime.datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw) if isinstance(raw, str) else None
        utc = None if moment is None or moment.tzinfo is None else moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # OverflowError: a time near year 1 or 9999 whose UTC is out of range
        utc = None
    if utc is None:
        raise _invalid(where, "created_at must be null or an ISO 8601 time with its UTC offset, "
                              "between the years 1 and 9999 in UTC")
    return utc


def _checked(check: Callable[[Any, str], Any], value: Any, where: str) -> Any:
    """``check(value)``, with the path of the item in the file added to a refusal."""
    try:
        return check(value, "invalid_import")
    except InvalidRequest as error:
        raise _invalid(where, error.message) from None


def _invalid(where: str, message: str) -> InvalidRequest:
    return InvalidRequest("invalid_import", f"{where}: {message}", field=where)
