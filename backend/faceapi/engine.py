"""The face engine: dlib's HOG detector and 5-point landmarks, and dlib's ResNet encoder on numpy.

Verbs and conventions follow ``face_recognition/api.py`` (boxes as
``(top, right, bottom, left)``, 128-d encodings, Euclidean distance) so that
results compare one to one with that package, but only the three models that
recognition needs are loaded (not the 100 MB 68-point model, not the CNN), and
they are loaded by a constructor, never at import.

Thread safety, by construction:
- dlib's HOG detector is not safe to share between threads (shared, it
  segfaults under gunicorn threads), so each detection borrows a detector of its
  own from a pool and returns it after. Building one takes about 0.2 s, so the
  pool is filled when the engine loads, in the gunicorn master before fork, and
  grows only if more detections run at once. Detection releases the GIL, so
  threads detect in parallel.
- The shape predictor is shared under a lock: landmarks and the aligned chips
  take about a millisecond a face and hold the GIL anyway.
- The encoder (`faceapi.encoder.FaceEncoder`) keeps no state between calls and
  runs its matrix products with the GIL released, so threads encode in parallel.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import math
import os
import queue
import tempfile
import threading
from collections.abc import Iterator

import dlib
import numpy as np

from faceapi.cnn import CnnFaceDetector
from faceapi.encoder import BATCH_FACES
from faceapi.encoder import FaceEncoder
from faceapi.matching import ENCODING_WIDTH
from faceapi.models import ModelPaths
from faceapi.models import model_id


@dataclasses.dataclass(frozen=True)
class Box:
    """A face's bounding box in pixels, ``face_recognition``'s ``(top, right, bottom, left)``."""

    top: int
    right: int
    bottom: int
    left: int

    def scaled(self, factor: float) -> Box:
        """This box in a frame ``factor`` times larger."""
        return Box(*(int(round(side * factor)) for side in dataclasses.astuple(self)))

    def clipped(self, width: int, height: int) -> Box:
        """This box trimmed to an image of the given size (``_trim_css_to_bounds``)."""
        return Box(max(self.top, 0), min(self.right, width), min(self.bottom, height), max(self.left, 0))

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)

    @property
    def side(self) -> int:
        """The shorter side: how many pixels of face there are to encode."""
        return max(0, min(self.right - self.left, self.bottom - self.top))


def largest_first(boxes: list[Box], count: int | None = None) -> list[Box]:
    """The ``count`` largest boxes (all when None), largest first; ties keep detection order."""
    return sorted(boxes, key=lambda box: -box.area)[:count]


# The points of dlib's 5-point model, named as face_recognition's ``face_landmarks(model="small")`` names them.
LANDMARK_NAMES = ("right_eye", "right_eye", "left_eye", "left_eye", "nose_tip")


class FaceEngine:
    """Detects and encodes faces in RGB uint8 arrays; safe to call from many threads."""

    def __init__(self, paths: ModelPaths, detectors: int = 1) -> None:
        """Load the shape predictor and encoder from ``paths`` (about 100 ms, 32 MB).

        :raises faceapi.dlib_model.ModelFormatError: the encoder file is not the network the reader knows.
        :param detectors: HOG detectors to build now (0.2 s each): as many as detections
            expected to run at once, so that no request waits for one to be built.
        """
        self._predictor = dlib.shape_predictor(str(paths.shape_predictor))
        self._encoder = FaceEncoder.load(paths.encoder)
        self._cnn = CnnFaceDetector.load(paths.cnn_detector or ModelPaths.from_package().cnn_detector)
        self._predictor_lock = threading.Lock()
        self._detectors: queue.SimpleQueue[dlib.fhog_object_detector] = queue.SimpleQueue()
        for _ in range(detectors):
            self._detectors.put(dlib.get_frontal_face_detector())
        self.model_id = model_id(paths)

    @classmethod
    def load(cls, detectors: int = 1) -> FaceEngine:
        """An engine on the models of the installed ``face_recognition_models`` package."""
        return cls(ModelPaths.from_package(), detectors)

    def face_locations(self, image: np.ndarray, scale: float, detector: str = "hog") -> list[Box]:
        """Boxes of every face in ``image``, in its own coordinates, not trimmed (see `face_detections`)."""
        return [box for box, _ in self.face_detections(image, scale, detector)]

    def face_detections(self, image: np.ndarray, scale: float, detector: str = "hog") -> list[tuple[Box, float | None]]:
        """Every face in ``image``: its box (in ``image``'s coordinates, not trimmed) and the detector's
        confidence (the CNN's score; None for HOG).

        :param scale: scanned pixels per pixel of ``image`` (`faceapi.scanning.ScanPlan`); the
            smallest face found is about ``SMALLEST_BOX_PX[detector] / scale`` px. Above 1 the image
            is doubled by dlib (``upsample``) as often as needed, after shrinking it to the rest:
            2 is face_recognition's own scan, boxes and all, for either detector.
        :param detector: ``"hog"`` (dlib's frontal HOG detector) or ``"cnn"`` (dlib's MMOD CNN, on numpy).
        """
        height, width = image.shape[:2]
        upsample = max(0, math.ceil(math.log2(scale) - 1e-9))
        shrink = scale / 2**upsample
        scan = image
        if shrink < 1 - 1e-6:
            # dlib's bilinear resize, the one its pyramid uses: 2-3x faster than Pillow's
            # antialiased one; the decoder's draft scale has already done any large reduction.
            scan = dlib.resize_image(image, max(1, round(height * shrink)), max(1, round(width * shrink)))
        factor = max(height, width) / max(scan.shape[:2])
        if detector == "cnn":
            with _host_wide_cnn_turn():
                found = [((d.rect.top, d.rect.right, d.rect.bottom, d.rect.left), d.confidence)
                         for d in self._cnn.detect(scan, upsample)]
        else:
            with self._borrowed_detector() as hog:
                found = [((r.top(), r.right(), r.bottom(), r.left()), None) for r in hog(scan, upsample)]
        return [(Box(*sides).scaled(factor), confidence) for sides, confidence in found]

    def face_encodings(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The ``(len(boxes), 128)`` float64 encodings of the faces at ``boxes`` in ``image``."""
        if not boxes:
            return np.empty((0, ENCODING_WIDTH))
        chips = self.face_chips(image, boxes)
        if len(chips) < 2 * BATCH_FACES:
            return self._encoder.encode(chips)
        # A group photo: two threads encode half the faces each (the GIL is released), same numbers.
        half = (len(chips) // 2 // BATCH_FACES) * BATCH_FACES
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            return np.concatenate(list(pool.map(self._encoder.encode, (chips[:half], chips[half:]))))

    def face_chips(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The ``(len(boxes), 150, 150, 3)`` aligned chips the encoder reads, cut as dlib's
        ``compute_face_descriptor`` cuts them (5 landmarks, padding 0.25, one call for all faces)."""
        chips = dlib.get_face_chips(image, self._shapes(image, boxes), size=self._encoder.chip_size, padding=0.25)
        return np.stack(chips)

    def landmarks(self, image: np.ndarray, boxes: list[Box]) -> list[list[tuple[int, int]]]:
        """The five ``(x, y)`` points of each face (`LANDMARK_NAMES`), in ``image``'s coordinates."""
        return [[(point.x, point.y) for point in shape.parts()] for shape in self._shapes(image, boxes)]

    def _shapes(self, image: np.ndarray, boxes: list[Box]) -> dlib.full_object_detections:
        shapes = dlib.full_object_detections()
        with self._predictor_lock:
            for box in boxes:
                shapes.append(self._predictor(image, dlib.rectangle(box.left, box.top, box.right, box.bottom)))
        return shapes

    @contextlib.contextmanager
    def _borrowed_detector(self) -> Iterator[dlib.fhog_object_detector]:
        """A detector no other thread uses until it is returned."""
        try:
            detector = self._detectors.get_nowait()
        except queue.Empty:
            detector = dlib.get_frontal_face_detector()
        try:
            yield detector
        finally:
            self._detectors.put(detector)


@contextlib.contextmanager
def _host_wide_cnn_turn() -> Iterator[None]:
    """One CNN detection at a time on this host, across every process of the service.

    A detection needs about 45 MB per million pixels scanned while it runs (FACEAPI_CNN_MAX_SCAN_PIXELS),
    and two workers' at once would not fit a 256 MB instance beside the rest of the load
    (tests/test_memory_fit.py). Each process opens the lock file itself, so that ``flock``
    excludes between processes.
    """
    with open(_CNN_LOCK_PATH, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


_CNN_LOCK_PATH = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                              f"faceapi-cnn-{os.getuid()}.lock")
