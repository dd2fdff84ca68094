"""Endpoints that look at faces without the gallery: detect and encode; and the health probes.

Recognize and verify, which search a collection, are in `faceapi.api.recognition`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from faceapi import auth
from faceapi.api import fields
from faceapi.api.context import get_services
from faceapi.api.images import find_faces
from faceapi.api.render import analysis_json
from faceapi.api.render import found_face_json

bp = Blueprint("faces", __name__)


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
@auth.needs(auth.RECOGNITION)
@fields.accepts(form=(fields.LANDMARKS, fields.IMAGE, *fields.DETECTION, fields.MAX_FACES), required=("image",))
def detect(values: dict[str, Any]) -> dict[str, Any]:
    """Where the faces of ``image`` are, without recognising them; ``landmarks=true`` adds five points each."""
    analysis = find_faces(values["image"], values, max_faces=values["max_faces"], encode=False,
                          landmarks=values["landmarks"])
    return analysis_json(analysis, [found_face_json(face) for face in analysis.faces])


@bp.post("/encode")
@auth.needs(auth.RECOGNITION)
@fields.accepts(form=(fields.IMAGE, *fields.DETECTION, fields.MAX_FACES), required=("image",))
def encode(values: dict[str, Any]) -> dict[str, Any]:
    """Every face of ``image`` with its 128-number encoding, for clients that match on their side."""
    analysis = find_faces(values["image"], values, max_faces=values["max_faces"])
    return analysis_json(analysis, [
        {**found_face_json(face), "encoding": face.encoding.tolist()} for face in analysis.faces])
