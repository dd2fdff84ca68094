"""From an uploaded image's bytes to its faces: decode, scan, choose, encode, in the upload's coordinates.

This is the one path every caller takes (each endpoint, the benchmarks, the tests),
so decoding bounds, the scan plan, image slots and coordinate mapping are the same
everywhere. It knows nothing of HTTP: the API turns its exceptions into answers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Callable

import numpy as np

from faceapi.config import Settings
from faceapi.engine import Box
from faceapi.engine import FaceEngine
from faceapi.engine import largest_first
from faceapi.imaging import LARGE_IMAGE_PIXELS
from faceapi.imaging import DecodedImage
from faceapi.imaging import Header
from faceapi.imaging import decode_image
from faceapi.matching import ENCODING_WIDTH
from faceapi.memory import host_wide_turn
from faceapi.memory import release_free_memory
from faceapi.scanning import DetectOptions
from faceapi.scanning import ScanPlan

# Fewer pixels of face than this (its box's shorter side, as decoded) and an enrollment is
# refused: the encoding drifts too far from the same face seen larger (docs/BENCHMARKS.md, face size).
MIN_ENROLL_FACE_PX = 80


class FaceCountError(ValueError):
    """An image that must show one usable face does not; ``code`` names the rule it broke."""

    code = "face_count"


class NoFaceFound(FaceCountError):
    code = "no_face"


class MultipleFaces(FaceCountError):
    code = "multiple_faces"


class FaceTooSmall(FaceCountError):
    code = "face_too_small"


@dataclasses.dataclass(frozen=True)
class FoundFace:
    """A face in the uploaded image: its box, and its encoding and five points when asked for."""

    box: Box
    encoding: np.ndarray | None = None
    landmarks: list[tuple[float, float]] | None = None
    confidence: float | None = None  # YuNet's or the CNN's score; HOG gives none


@dataclasses.dataclass(frozen=True)
class Analysis:
    """The faces of one upload, the upload's size after orientation, and how it was scanned."""

    width: int
    height: int
    plan: ScanPlan
    faces: list[FoundFace]

    def encodings(self) -> np.ndarray:
        """The ``(len(faces), 128)`` encodings, for faces found with ``encode``."""
        return np.array([face.encoding for face in self.faces], dtype=np.float64).reshape(-1, ENCODING_WIDTH)


Chooser = Callable[[list[Box]], list[Box]]


def detect_options(settings: Settings) -> DetectOptions:
    """How hard detection looks by default and at most, from the settings."""
    return DetectOptions(settings.min_face_px, settings.detect_side_px, settings.max_scan_pixels,
                         settings.cnn_max_scan_pixels, settings.full_search_pixels)


class Pipeline:
    """The analysis of uploads with one engine and one set of settings; safe to call from many threads.

    :param image_slots: held while an image is decoded and analysed, so a process holds at most
        ``FACEAPI_MAX_CONCURRENT_IMAGES`` decoded images at a time (a new semaphore when None).
    """

    def __init__(self, engine: FaceEngine, settings: Settings,
                 image_slots: threading.BoundedSemaphore | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.detect = detect_options(settings)
        self.image_slots = image_slots or threading.BoundedSemaphore(settings.max_concurrent_images)
        # The host-wide turn is this service's: its store's location names it (a pickle path made absolute).
        location = settings.store_location
        self.service = location if settings.database_url else os.path.abspath(location)

    def find_faces(self, data: bytes, min_face_px: int | None = None, *, detector: str | None = None,
                   max_faces: int | None = None, encode: bool = True, landmarks: bool = False) -> Analysis:
        """Every face in the image (the ``max_faces`` largest, largest first, when given).

        :param min_face_px: the smallest face to search for, in uploaded pixels (None: the settings' default).
        :param detector: ``"yunet"``, ``"hog"`` or ``"cnn"`` (None: ``FACEAPI_DETECTOR``).
        :raises faceapi.imaging.UnreadableImage, faceapi.imaging.ImageTooLarge: the bytes are no image it takes.
        """
        def choose(boxes: list[Box]) -> list[Box]:
            return boxes if max_faces is None else largest_first(boxes, max_faces)

        return self._analyse(data, min_face_px, detector, choose, encode=encode, landmarks=landmarks)

    def find_one_face(self, data: bytes, min_face_px: int | None = None, *, detector: str | None = None,
                      largest: bool = False, min_side_px: int | None = None) -> Analysis:
        """The one face of the image, encoded.

        :param largest: with several faces, take the largest instead of refusing.
        :param min_side_px: refuse a face with fewer decoded pixels than this.
        :raises NoFaceFound, MultipleFaces, FaceTooSmall: the image does not show one usable face.
        """
        def choose(boxes: list[Box]) -> list[Box]:
            if not boxes:
                raise NoFaceFound("no face was found")
            if len(boxes) > 1 and not largest:
                raise MultipleFaces(f"{len(boxes)} faces were found where one must be")
            face = largest_first(boxes, 1)
            if min_side_px is not None and face[0].side < min_side_px:
                raise FaceTooSmall(f"the face is {face[0].side} px across; at least {min_side_px} px is needed "
                                   "to encode it reliably")
            return face

        return self._analyse(data, min_face_px, detector, choose, encode=True, landmarks=False)

    def decode_side(self, width: int, height: int, min_face_px: int | None, detector: str) -> int:
        """The longest side to decode an upload at: what its scan needs, and at least ``FACEAPI_ENCODE_SIDE_PX``."""
        scale = self.detect.plan(width, height, min_face_px, detector).scale
        return max(self.settings.encode_side_px, math.ceil(min(1.0, scale) * max(width, height)))

    def _analyse(self, data: bytes, min_face_px: int | None, detector: str | None, choose: Chooser, *,
                 encode: bool, landmarks: bool) -> Analysis:
        """Decode the image large enough for its scan and analyse it, holding an image slot.

        The pixels are dropped before the slot is released.
        """
        settings, engine = self.settings, self.engine
        detector = detector or settings.detector
        with self.image_slots, contextlib.ExitStack() as turn:

            def decode_side(header: Header) -> int:
                """The side to decode at, known from the header; then the analysis waits for its turn on the
                host (alone if it is large: a CNN detection, or a decode holding over `LARGE_IMAGE_PIXELS`)."""
                side = self.decode_side(header.width, header.height, min_face_px, detector)
                large = detector == "cnn" or header.pixels_held(side) > LARGE_IMAGE_PIXELS
                turn.enter_context(host_wide_turn(large=large, service=self.service))
                return side

            image = decode_image(data, max_side_px=decode_side, max_pixels=settings.max_image_pixels,
                                 max_full_decode_pixels=settings.max_full_decode_pixels)
            plan = self.detect.plan(image.width, image.height, min_face_px, detector)
            found = engine.face_detections(image.pixels, plan.scale * image.scale, detector,
                                           min_confidence=settings.min_detection_confidence)
            confidence = {id(box): score for box, score in found}
            boxes = choose([box for box, _ in found])
            chips = engine.face_chips(image.pixels, boxes) if encode and boxes else None
            points = engine.landmarks(image.pixels, boxes) if landmarks else [None] * len(boxes)
            frame = dataclasses.replace(image, pixels=np.empty((0, 0, 3), dtype=np.uint8))
            del image  # the pixels go before the network runs: a 12 MP photo's are 36 MB
            encodings = engine.chip_encodings(chips) if chips is not None else [None] * len(boxes)
            faces = [FoundFace(_to_upload_frame(box, frame), encoding, _points_in_upload_frame(face_points, frame),
                               confidence[id(box)])
                     for box, encoding, face_points in zip(boxes, encodings, points, strict=True)]
            release_free_memory()
            return Analysis(frame.width, frame.height, plan, faces)


def _to_upload_frame(box: Box, image: DecodedImage) -> Box:
    """A box on the decoded copy, in the coordinates of the uploaded image (after orientation)."""
    return box.scaled(image.scale).clipped(image.width, image.height)


def _points_in_upload_frame(points: list[tuple[int, int]] | None,
                            image: DecodedImage) -> list[tuple[float, float]] | None:
    if points is None:
        return None
    return [(round(x * image.scale, 1), round(y * image.scale, 1)) for x, y in points]
