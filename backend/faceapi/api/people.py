"""Endpoints for enrolled people: enroll, list (paged), show, rename or merge, delete, delete one face.

Each is served at its path (the default collection) and under ``/collections/<collection>``
(`faceapi.api.register`); its view gets the collection as ``collection``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flask import Blueprint
from werkzeug.routing import PathConverter

from faceapi.api import fields
from faceapi.api.context import get_services
from faceapi.api.images import find_one_face
from faceapi.api.render import detection_json
from faceapi.api.render import stored_face_json
from faceapi.errors import InvalidRequest
from faceapi.pipeline import MIN_ENROLL_FACE_PX
from faceapi.store import UnknownPerson

bp = Blueprint("people", __name__)


class PersonNameConverter(PathConverter):
    """A person's name in a URL: may hold slashes (URL-encoded or not), but never ``/faces/``,
    which starts a single face's path (`fields.valid_name` refuses such names)."""

    regex = r"[^/](?:(?!/faces/).)*"

@bp.post("/enroll")
@fields.accepts(form=(fields.NAME, fields.IMAGES, fields.EXTERNAL_ID, *fields.DETECTION),
                json=(fields.NAME, fields.ENCODINGS, fields.EXTERNAL_IDS), required=("name", "image", "encodings"))
def enroll(values: dict[str, Any], collection: str) -> tuple[dict[str, Any], int]:
    """Add faces to person ``name`` of the collection: the one face of each uploaded ``image``, or posted
    ``encodings``.

    All are added or none is. Enrolling an existing name adds to that person.
    """
    name = values["name"]
    if "encodings" in values:
        encodings = values["encodings"]
        external_ids = _external_ids(values["external_ids"], len(encodings))
        enrollment = get_services().store.add_faces(name, encodings, external_ids, collection=collection)
        faces = [{"id": face_id} for face_id in enrollment.face_ids]
        return {"name": enrollment.name, "faces": faces, "face_count": enrollment.face_count}, 201
    uploads = values["image"]
    external_ids = _external_ids(values["external_id"], len(uploads))
    found = [find_one_face(upload, _image_field(index, len(uploads)), values, min_side_px=MIN_ENROLL_FACE_PX)
             for index, upload in enumerate(uploads)]
    encodings = np.stack([analysis.faces[0].encoding for analysis in found])
    enrollment = get_services().store.add_faces(name, encodings, external_ids, collection=collection)
    return {
        "name": enrollment.name,
        "faces": [
            {"id": face_id, "box": dataclasses.asdict(analysis.faces[0].box), "detection": detection_json(analysis)}
            for face_id, analysis in zip(enrollment.face_ids, found, strict=True)
        ],
        "face_count": enrollment.face_count,
    }, 201


@bp.get("/people")
@fields.accepts(query=(fields.LIMIT, fields.CURSOR))
def people(values: dict[str, Any], collection: str) -> dict[str, Any]:
    """Enrolled people by name, a page at a time: ``limit`` per page, ``cursor`` from the last page's ``next``."""
    limit = values["limit"] or fields.DEFAULT_PAGE_SIZE
    page = get_services().store.people(limit=limit + 1, after=values["cursor"], collection=collection)
    more = len(page) > limit
    page = page[:limit]
    return {"people": [dataclasses.asdict(person) for person in page],
            "next": fields.cursor_after(page[-1].name) if more else None}


@bp.get("/people/<person:name>")
def person(name: str, collection: str) -> dict[str, Any]:
    """One person's faces: id, creation time and the client's ``external_id``, oldest first."""
    faces = get_services().store.person_faces(_enrolled(name), collection=collection)
    return {"name": name, "face_count": len(faces), "faces": [stored_face_json(face) for face in faces]}


@bp.patch("/people/<person:name>")
@fields.accepts(json=(fields.NAME, fields.MERGE), required=("name",))
def rename_person(values: dict[str, Any], name: str, collection: str) -> dict[str, Any]:
    """Rename a person (JSON ``{"name": new}``); onto an enrolled name only with ``"merge": true``."""
    if fields.json_body() is None:
        raise InvalidRequest("invalid_json", 'send a JSON body such as {"name": "new name"}')
    face_count = get_services().store.rename_person(_enrolled(name), values["name"], merge=values["merge"],
                                                    collection=collection)
    return {"name": values["name"], "face_count": face_count}


@bp.delete("/people/<person:name>")
def delete_person(name: str, collection: str) -> dict[str, Any]:
    """Remove a person and every face enrolled for them."""
    removed = get_services().store.remove_person(_enrolled(name), collection=collection)
    return {"name": name, "deleted_faces": removed}


@bp.delete("/people/<person:name>/faces/<face_id>")
def delete_face(name: str, face_id: str, collection: str) -> dict[str, Any]:
    """Remove one face; the person keeps the others (and is removed with their last face)."""
    left = get_services().store.remove_face(_enrolled(name), face_id, collection=collection)
    return {"name": name, "deleted_face": face_id, "face_count": left}


def _enrolled(name: str) -> str:
    """A name from a URL, checked to be one that could be enrolled: any other is 404 ``unknown_person`` at
    once, on every store (PostgreSQL refuses a NUL in any text it is sent)."""
    if not fields.addressable(name):
        raise UnknownPerson(name)
    return name


def _external_ids(raw: Any, count: int) -> list[str | None] | None:
    """The clients' references, one per face, or None; 400 ``invalid_external_id`` if they do not fit."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != count:
        raise InvalidRequest("invalid_external_id", f"send one external_id per face ({count})", field="external_id")
    return [fields.valid_external_id(value) for value in raw]


def _image_field(index: int, count: int) -> str:
    return "image" if count == 1 else f"image[{index}]"
