"""HTTP endpoints: parse and validate the request, call the engine and store, serialise.

Images arrive as multipart field ``image``; every answer is JSON.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar

import numpy as np
from flask import Blueprint
from flask import current_app
from flask import request
from werkzeug.datastructures import FileStorage

from faceapi.engine import Box
from faceapi.engine import Face
from faceapi.errors import InvalidRequest
from faceapi.imaging import DecodedImage
from faceapi.imaging import decode_image
from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import match_faces
from faceapi.memory import release_free_memory
from faceapi.scanning import ScanPlan
from faceapi.services import Services

bp = Blueprint("faces", __name__)

MAX_NAME_LENGTH = 100
MAX_ENROLL_IMAGES = 10
MAX_MIN_FACE_PX = 100_000

Number = TypeVar("Number", int, float)


def get_services() -> Services:
    """The engine, store and settings of the running app."""
    return current_app.extensions["faceapi"]


@bp.get("/health")
def health() -> dict[str, Any]:
    """Liveness: answers as long as the worker serves requests; touches no model or store."""
    return {"status": "ok"}


@bp.get("/ready")
def ready() -> dict[str, Any]:
    """Readiness: the models are loaded (they are, once the app exists) and the store is readable.

    An unreadable store raises `StoreError`, which errors.py answers with 503 ``store_unavailable``.
    """
    get_services().store.check()
    return {"status": "ready"}


@bp.post("/enroll")
def enroll() -> tuple[dict[str, Any], int]:
    """Add the one face in each uploaded ``image`` to person ``name``; all images or none."""
    services = get_services()
    name = _read_name()
    uploads = request.files.getlist("image")
    if not uploads:
        raise InvalidRequest("missing_image", "send one or more images as multipart field 'image'")
    if len(uploads) > MAX_ENROLL_IMAGES:
        raise InvalidRequest("too_many_images", f"send at most {MAX_ENROLL_IMAGES} images per enrollment")
    min_face_px = _read_min_face_px()
    found = [_faces_in(upload, min_face_px, single=True) for upload in uploads]
    faces = [image_faces[0] for image_faces, _ in found]
    enrollment = services.store.add_faces(name, _stack(face.encoding for face in faces))
    return {
        "name": enrollment.name,
        "faces": [
            {"id": face_id, "box": dataclasses.asdict(face.box), "detection": _detection(plan)}
            for face_id, face, (_, plan) in zip(enrollment.face_ids, faces, found, strict=True)
        ],
        "face_count": enrollment.face_count,
    }, 201


@bp.post("/recognize")
def recognize() -> dict[str, Any]:
    """Every face in ``image``, each with the enrolled name it matches or null."""
    services = get_services()
    tolerance = _read_tolerance(services.settings.tolerance)
    faces, plan = _faces_in(_single_upload(), _read_min_face_px(), single=False)
    matches = match_faces(services.store.gallery(), _stack(face.encoding for face in faces), tolerance)
    return {
        "detection": _detection(plan),
        "faces": [
            {
                "box": dataclasses.asdict(face.box),
                "name": match.name,
                "matched": match.matched,
                "distance": None if match.distance is None else round(match.distance, 6),
            }
            for face, match in zip(faces, matches, strict=True)
        ]
    }


@bp.get("/people")
def people() -> dict[str, Any]:
    """Every enrolled person with their face count, sorted by name."""
    return {"people": [dataclasses.asdict(person) for person in get_services().store.people()]}


@bp.delete("/people/<path:name>")
def delete_person(name: str) -> dict[str, Any]:
    """Remove a person and every face enrolled for them."""
    removed = get_services().store.remove_person(name)
    return {"name": name, "deleted_faces": removed}


def _read_name() -> str:
    raw = request.form.get("name")
    if raw is None:
        raise InvalidRequest("missing_name", "send the person's name as form field 'name'")
    name = raw.strip()
    if not name:
        raise InvalidRequest("invalid_name", "the name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest("invalid_name", f"the name must be at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise InvalidRequest("invalid_name", "the name must not contain control or invisible format characters")
    return name


def _read_tolerance(default: float) -> float:
    tolerance = _read_number("tolerance", float, lambda value: math.isfinite(value) and 0 < value <= 1,
                             "tolerance must be a number greater than 0 and at most 1")
    return default if tolerance is None else tolerance


def _read_min_face_px() -> int | None:
    return _read_number("min_face_px", int, lambda value: 1 <= value <= MAX_MIN_FACE_PX,
                        f"min_face_px must be a whole number of pixels from 1 to {MAX_MIN_FACE_PX}")


def _read_number(field: str, parse: Callable[[str], Number], valid: Callable[[Number], bool],
                 message: str) -> Number | None:
    """Optional form or query field ``field``: None if absent or blank, else 400 ``invalid_<field>`` unless valid."""
    raw = request.values.get(field)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = parse(raw)
    except ValueError:
        raise InvalidRequest(f"invalid_{field}", message) from None
    if not valid(value):
        raise InvalidRequest(f"invalid_{field}", message)
    return value


def _detection(plan: ScanPlan) -> dict[str, Any]:
    """What the scan searched: faces from ``min_face_px`` up; ``limited`` if the pixel cap made that coarser."""
    return {"min_face_px": plan.min_face_px, "limited": plan.limited}


def _single_upload() -> FileStorage:
    uploads = request.files.getlist("image")
    if not uploads:
        raise InvalidRequest("missing_image", "send the image as multipart field 'image'")
    if len(uploads) > 1:
        raise InvalidRequest("too_many_images", "send exactly one image")
    return uploads[0]


def _faces_in(upload: FileStorage, min_face_px: int | None, *, single: bool) -> tuple[list[Face], ScanPlan]:
    """The faces in one upload, boxes in its own coordinates, and how it was scanned.

    :param min_face_px: the smallest face to find, in uploaded pixels (None: the server's default).
    :param single: demand exactly one face.

    The image is decoded large enough for the scan (and at least ``FACEAPI_ENCODE_SIDE_PX``).
    Decoding and analysis hold one of the worker's image slots, and the pixels are
    dropped before the slot is released, so a worker holds at most
    ``FACEAPI_MAX_CONCURRENT_IMAGES`` decoded images at a time.
    """
    data = upload.read()
    if not data:
        raise InvalidRequest("empty_image", "the uploaded image is empty")
    services = get_services()
    settings = services.settings
    engine = services.engine

    def plan_for(width: int, height: int) -> ScanPlan:
        return services.detect.plan(width, height, min_face_px)

    def decode_side(width: int, height: int) -> int:
        longest = max(width, height)
        return max(settings.encode_side_px, math.ceil(min(1.0, plan_for(width, height).scale) * longest))

    with services.image_slots:
        image = decode_image(data, max_side_px=decode_side, max_pixels=settings.max_image_pixels,
                             max_full_decode_pixels=settings.max_full_decode_pixels)
        plan = plan_for(image.width, image.height)
        scale = plan.scale * image.scale  # scanned pixels per decoded pixel
        if single:
            faces = [engine.find_single_face(image.pixels, scale)]
        else:
            faces = engine.find_faces(image.pixels, scale)
        located = [Face(_to_upload_frame(face.box, image), face.encoding) for face in faces]
        del image
        release_free_memory()
        return located, plan


def _to_upload_frame(box: Box, image: DecodedImage) -> Box:
    """A box on the decoded copy, in the coordinates of the uploaded image (after orientation)."""
    return box.scaled(image.scale).clipped(image.width, image.height)


def _stack(encodings: Iterable[np.ndarray]) -> np.ndarray:
    return np.array(list(encodings), dtype=np.float64).reshape(-1, ENCODING_WIDTH)
