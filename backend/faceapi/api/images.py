"""From one uploaded image to its faces: decode, scan, choose, encode, in the upload's coordinates.

Every endpoint that reads an image goes through `find_faces` or `find_one_face`, so
decoding bounds, image slots and coordinate mapping are the same everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from werkzeug.datastructures import FileStorage

from faceapi import metrics
from faceapi.api.fields import get_services
from faceapi.engine import Box
from faceapi.engine import largest_first
from faceapi.errors import InvalidRequest
from faceapi.imaging import DecodedImage
from faceapi.imaging import decode_image
from faceapi.matching import ENCODING_WIDTH
from faceapi.memory import release_free_memory
from faceapi.scanning import ScanPlan

# Fewer pixels of face than this (its box's shorter side, as decoded) and an enrollment is
# refused: the encoding drifts too far from the same face seen larger (docs/BENCHMARKS.md, face size).
MIN_ENROLL_FACE_PX = 80


@dataclasses.dataclass(frozen=True)
class FoundFace:
    """A face in the uploaded image: its box, and its encoding and five points when asked for."""

    box: Box
    encoding: np.ndarray | None = None
    landmarks: list[tuple[float, float]] | None = None


@dataclasses.dataclass(frozen=True)
class Analysis:
    """The faces of one upload, the upload's size after orientation, and how it was scanned."""

    width: int
    height: int
    plan: ScanPlan
    faces: list[FoundFace]

    def image_json(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height}

    def encodings(self) -> np.ndarray:
        """The ``(len(faces), 128)`` encodings, for faces found with ``encode``."""
        return np.array([face.encoding for face in self.faces], dtype=np.float64).reshape(-1, ENCODING_WIDTH)

    def detection_json(self) -> dict[str, Any]:
        """What the scan searched: faces from ``min_face_px`` up; ``limited`` if the pixel cap made that coarser."""
        return {"min_face_px": self.plan.min_face_px, "limited": self.plan.limited}


Chooser = Callable[[list[Box]], list[Box]]


def find_faces(upload: FileStorage, min_face_px: int | None, *, max_faces: int | None = None,
               encode: bool = True, landmarks: bool = False) -> Analysis:
    """Every face in ``upload`` (the ``max_faces`` largest, largest first, when given)."""
    choose: Chooser = (lambda boxes: boxes) if max_faces is None else (lambda boxes: largest_first(boxes, max_faces))
    return _analyse(upload, min_face_px, choose, encode=encode, landmarks=landmarks)


def find_one_face(upload: FileStorage, field: str, min_face_px: int | None, *, largest: bool = False,
                  min_side_px: int | None = None) -> Analysis:
    """The one face of ``upload``, encoded; 422 naming ``field`` when there is none or several.

    :param largest: with several faces, take the largest instead of refusing.
    :param min_side_px: refuse a face with fewer decoded pixels than this (``face_too_small``).
    """

    def choose(boxes: list[Box]) -> list[Box]:
        if not boxes:
            raise InvalidRequest("no_face", f"{field}: no face was found", 422, field=field)
        if len(boxes) > 1 and not largest:
            raise InvalidRequest("multiple_faces", f"{field}: {len(boxes)} faces were found where one must be; "
                                 "send largest=true to use the largest", 422, field=field)
        face = largest_first(boxes, 1)
        if min_side_px is not None and face[0].side < min_side_px:
            raise InvalidRequest("face_too_small", f"{field}: the face is {face[0].side} px across; at least "
                                 f"{min_side_px} px is needed to encode it reliably", 422, field=field)
        return face

    return _analyse(upload, min_face_px, choose, encode=True, landmarks=False)


def _analyse(upload: FileStorage, min_face_px: int | None, choose: Chooser, *, encode: bool,
             landmarks: bool) -> Analysis:
    """Decode ``upload`` large enough for its scan (and at least ``FACEAPI_ENCODE_SIDE_PX``) and analyse it.

    Decoding and analysis hold one of the worker's image slots, and the pixels are
    dropped before the slot is released, so a worker holds at most
    ``FACEAPI_MAX_CONCURRENT_IMAGES`` decoded images at a time.
    """
    data = upload.read()
    if not data:
        raise InvalidRequest("empty_image", "the uploaded image is empty", field=upload.name or "image")
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
        boxes = choose(engine.face_locations(image.pixels, plan.scale * image.scale))
        encodings = engine.face_encodings(image.pixels, boxes) if encode else [None] * len(boxes)
        points = engine.landmarks(image.pixels, boxes) if landmarks else [None] * len(boxes)
        faces = [FoundFace(_to_upload_frame(box, image), encoding, _points_in_upload_frame(face_points, image))
                 for box, encoding, face_points in zip(boxes, encodings, points, strict=True)]
        analysis = Analysis(image.width, image.height, plan, faces)
        metrics.faces_detected(len(faces))
        del image
        release_free_memory()
        return analysis


def _to_upload_frame(box: Box, image: DecodedImage) -> Box:
    """A box on the decoded copy, in the coordinates of the uploaded image (after orientation)."""
    return box.scaled(image.scale).clipped(image.width, image.height)


def _points_in_upload_frame(points: list[tuple[int, int]] | None,
                            image: DecodedImage) -> list[tuple[float, float]] | None:
    if points is None:
        return None
    return [(round(x * image.scale, 1), round(y * image.scale, 1)) for x, y in points]
