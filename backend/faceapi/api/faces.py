"""Endpoints that look at faces: detect, encode, recognize, verify; and the health probes."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint

from faceapi.api import fields
from faceapi.api.context import get_services
from faceapi.api.images import find_faces
from faceapi.api.images import find_one_face
from faceapi.api.render import analysis_json
from faceapi.api.render import found_face_json
from faceapi.api.render import image_json
from faceapi.errors import InvalidRequest
from faceapi.matching import Gallery
from faceapi.matching import face_distance
from faceapi.matching import match_faces
from faceapi.matching import nearest_people
from faceapi.pipeline import Analysis

bp = Blueprint("faces", __name__)

MAX_FACES = 1000
MAX_TOP_K = 100


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


@bp.post("/detect")
def detect() -> dict[str, Any]:
    """Where the faces of ``image`` are, without recognising them; ``landmarks=true`` adds five points each."""
    with_landmarks = fields.read_flag("landmarks")
    analysis = find_faces(_image(), fields.read_min_face_px(), max_faces=fields.read_count("max_faces", MAX_FACES),
                          encode=False, landmarks=with_landmarks)
    return analysis_json(analysis, [found_face_json(face) for face in analysis.faces])


@bp.post("/encode")
def encode() -> dict[str, Any]:
    """Every face of ``image`` with its 128-number encoding, for clients that match on their side."""
    analysis = find_faces(_image(), fields.read_min_face_px(), max_faces=fields.read_count("max_faces", MAX_FACES))
    return analysis_json(analysis, [
        {**found_face_json(face), "encoding": face.encoding.tolist()} for face in analysis.faces])


@bp.post("/recognize")
def recognize() -> dict[str, Any]:
    """Every face of ``image`` (or each posted encoding), each with the enrolled name it matches or null."""
    services = get_services()
    tolerance = fields.read_tolerance(services.settings.tolerance)
    top_k = fields.read_count("top_k", MAX_TOP_K)
    body = fields.json_body()
    if body is not None:
        encodings = fields.read_encodings(fields.raw_field("encodings"))
        return {"faces": _decisions(services.store.gallery(), encodings, tolerance, top_k)}
    analysis = find_faces(_image(), fields.read_min_face_px(), max_faces=fields.read_count("max_faces", MAX_FACES))
    decisions = _decisions(services.store.gallery(), analysis.encodings(), tolerance, top_k)
    return analysis_json(analysis, [
        {**found_face_json(face), **decision} for face, decision in zip(analysis.faces, decisions, strict=True)])


@bp.post("/verify")
def verify() -> dict[str, Any]:
    """Whether two faces are the same person: ``image_a`` and ``image_b``, or ``image`` and an enrolled ``name``."""
    services = get_services()
    tolerance = fields.read_tolerance(services.settings.tolerance)
    min_face_px = fields.read_min_face_px()
    largest = fields.read_flag("largest")
    if fields.raw_field("name") is not None:
        name = fields.read_name()
        faces = services.store.person_faces(name)
        if not faces:  # enrolled by other models only (a PostgreSQL store shared across model versions)
            raise InvalidRequest("no_enrolled_face", f"{name!r} has no face encoded by this service's models; "
                                 "enroll a photo of them again", 422, field="name")
        known = np.stack([face.encoding for face in faces])
        side = find_one_face(_image(), "image", min_face_px, largest=largest)
        distance = float(face_distance(known, _encoding(side)).min())
        return {**_verdict(distance, tolerance), "name": name, "image": _side_json(side)}
    side_a = find_one_face(_image("image_a"), "image_a", min_face_px, largest=largest)
    side_b = find_one_face(_image("image_b"), "image_b", min_face_px, largest=largest)
    distance = float(face_distance(_encoding(side_a)[None, :], _encoding(side_b))[0])
    return {**_verdict(distance, tolerance), "image_a": _side_json(side_a), "image_b": _side_json(side_b)}


def _image(field: str = "image") -> Any:
    return fields.uploads(field, 1)[0]


def _decisions(gallery: Gallery, encodings: np.ndarray, tolerance: float, top_k: int | None) -> list[dict[str, Any]]:
    """For each encoding: the match decision, and with ``top_k`` the nearest distinct people."""
    decisions = [{"name": match.name, "matched": match.matched, "distance": _rounded(match.distance)}
                 for match in match_faces(gallery, encodings, tolerance)]
    if top_k is not None:
        for decision, candidates in zip(decisions, nearest_people(gallery, encodings, top_k), strict=True):
            decision["candidates"] = [{"name": c.name, "distance": _rounded(c.distance)} for c in candidates]
    return decisions


def _verdict(distance: float, tolerance: float) -> dict[str, Any]:
    return {"match": distance <= tolerance, "distance": _rounded(distance), "tolerance": tolerance}


def _side_json(analysis: Analysis) -> dict[str, Any]:
    return {**found_face_json(analysis.faces[0]), "image": image_json(analysis)}


def _encoding(analysis: Analysis) -> np.ndarray:
    return analysis.faces[0].encoding


def _rounded(distance: float | None) -> float | None:
    return None if distance is None else round(distance, 6)
