"""The JSON shapes of the answers: faces found in an upload, and faces as stored."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from faceapi.engine import LANDMARK_NAMES
from faceapi.pipeline import Analysis
from faceapi.pipeline import FoundFace
from faceapi.store import FaceRecord


def analysis_json(analysis: Analysis, faces: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer's frame around ``faces``: the upload's size and what the scan searched."""
    return {"image": image_json(analysis), "detection": detection_json(analysis), "faces": faces}


def image_json(analysis: Analysis) -> dict[str, int]:
    return {"width": analysis.width, "height": analysis.height}


def detection_json(analysis: Analysis) -> dict[str, Any]:
    """What the scan searched: faces from ``min_face_px`` up, with which detector; ``limited`` if the pixel cap
    made that coarser."""
    plan = analysis.plan
    return {"min_face_px": plan.min_face_px, "limited": plan.limited, "detector": plan.detector}


def found_face_json(face: FoundFace) -> dict[str, Any]:
    """A face found in an upload: its box, the detector's confidence when it gives one (YuNet, the CNN), and its five
    points by name when they were computed."""
    answer: dict[str, Any] = {"box": dataclasses.asdict(face.box)}
    if face.confidence is not None:
        answer["confidence"] = round(face.confidence, 6)
    if face.landmarks is not None:
        named: dict[str, list[list[float]]] = {}
        for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks, strict=True):
            named.setdefault(name, []).append([x, y])
        answer["landmarks"] = named
    return answer


def stored_face_json(face: FaceRecord) -> dict[str, Any]:
    """A face as listed (and, with its encoding, exported): id, creation time in UTC, client's reference."""
    created = None if face.created_at is None else json_time(face.created_at)
    return {"id": face.face_id, "created_at": created, "external_id": face.external_id}


def json_time(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, whatever zone the store's clock (a database session) used."""
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
