"""Endpoints that search a collection: recognize every face of a photo, and verify.

Each is served at its path (the default collection) and under ``/collections/<collection>``
(`faceapi.api.register`); its view gets the collection as ``collection``. Read-only keys
may call them (`faceapi.auth`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint

from faceapi import auth
from faceapi import openset
from faceapi.api import fields
from faceapi.api.context import get_services
from faceapi.api.images import find_faces
from faceapi.api.images import find_one_face
from faceapi.api.render import analysis_json
from faceapi.api.render import found_face_json
from faceapi.api.render import image_json
from faceapi.errors import InvalidRequest
from faceapi.matching import face_distance
from faceapi.pipeline import Analysis

VERIFY_TOLERANCE = 0.6  # /verify's threshold when FACEAPI_TOLERANCE is unset (measured: docs/OPENSET.md)

bp = Blueprint("recognition", __name__)


@bp.post("/recognize")
@auth.needs(auth.RECOGNITION)
@fields.accepts(form=(fields.TOLERANCE, fields.FALSE_MATCH_RATE, fields.TOP_K, fields.IMAGE, *fields.DETECTION,
                      fields.MAX_FACES),
                json=(fields.TOLERANCE, fields.FALSE_MATCH_RATE, fields.TOP_K, fields.ENCODINGS),
                required=("image", "encodings"))
def recognize(values: dict[str, Any], collection: str) -> dict[str, Any]:
    """Every face of ``image`` (or each posted encoding), each with the name it matches in the collection or null."""
    if "encodings" in values:
        return {"faces": _decisions(collection, values["encodings"], values)}
    analysis = find_faces(values["image"], values, max_faces=values["max_faces"])
    decisions = _decisions(collection, analysis.encodings(), values)
    return analysis_json(analysis, [
        {**found_face_json(face), **decision} for face, decision in zip(analysis.faces, decisions, strict=True)])


@bp.post("/verify")
@auth.needs(auth.RECOGNITION)
@fields.accepts(form=(fields.TOLERANCE, *fields.DETECTION, fields.LARGEST, fields.NAME, fields.IMAGE, fields.IMAGE_A,
                      fields.IMAGE_B))
def verify(values: dict[str, Any], collection: str) -> dict[str, Any]:
    """Whether two faces are the same person: ``image_a`` and ``image_b``, or ``image`` and ``name`` enrolled in
    the collection."""
    services = get_services()
    tolerance = _tolerance(values, VERIFY_TOLERANCE)
    largest = values["largest"]
    if values["name"] is not None:
        name = values["name"]
        faces = services.store.person_faces(name, collection=collection)
        if not faces:  # enrolled by other models only (a PostgreSQL store shared across model versions)
            raise InvalidRequest("no_enrolled_face", f"{name!r} has no face encoded by this service's models; "
                                 "enroll a photo of them again", 422, field="name")
        known = np.stack([face.encoding for face in faces])
        side = find_one_face(fields.IMAGE.required(values["image"]), "image", values, largest=largest)
        distance = float(face_distance(known, _encoding(side)).min())
        return {**_verdict(distance, tolerance), "name": name, "image": _side_json(side)}
    side_a = find_one_face(fields.IMAGE_A.required(values["image_a"]), "image_a", values, largest=largest)
    side_b = find_one_face(fields.IMAGE_B.required(values["image_b"]), "image_b", values, largest=largest)
    distance = float(face_distance(_encoding(side_a)[None, :], _encoding(side_b))[0])
    return {**_verdict(distance, tolerance), "image_a": _side_json(side_a), "image_b": _side_json(side_b)}


def _tolerance(values: dict[str, Any], default: float | None = None) -> float | None:
    """The request's tolerance, else the service's (FACEAPI_TOLERANCE), else ``default``."""
    if values["tolerance"] is not None:
        return values["tolerance"]
    settings_tolerance = get_services().settings.tolerance
    return default if settings_tolerance is None else settings_tolerance


def _decisions(collection: str, encodings: np.ndarray, values: dict[str, Any]) -> list[dict[str, Any]]:
    """For each encoding: the decision in the collection (`faceapi.openset.identify`), its estimated false-match
    rate, and with ``top_k`` the nearest distinct people."""
    services = get_services()
    rate = services.settings.false_match_rate if values["false_match_rate"] is None else values["false_match_rate"]
    top_k = values["top_k"]
    decisions = []
    for decision, candidates in openset.identify(services.store, encodings, rate, tolerance=_tolerance(values),
                                                 count=top_k or 1, collection=collection):
        answer = {"name": decision.name, "matched": decision.matched, "distance": _rounded(decision.distance),
                  "false_match_rate": _rounded(decision.false_match_rate)}
        if top_k is not None:
            answer["candidates"] = [{"name": c.name, "distance": _rounded(c.distance)} for c in candidates]
        decisions.append(answer)
    return decisions


def _verdict(distance: float, tolerance: float) -> dict[str, Any]:
    return {"match": distance <= tolerance, "distance": _rounded(distance), "tolerance": tolerance}


def _side_json(analysis: Analysis) -> dict[str, Any]:
    return {**found_face_json(analysis.faces[0]), "image": image_json(analysis)}


def _encoding(analysis: Analysis) -> np.ndarray:
    return analysis.faces[0].encoding


def _rounded(distance: float | None) -> float | None:
    return None if distance is None else round(distance, 6)
