"""The face engine: YuNet, dlib's HOG and CNN detectors, dlib's 5-point landmarks, and dlib's ResNet encoder on numpy.

Verbs and conventions follow ``face_recognition/api.py`` (boxes as
``(top, right, bottom, left)``, 128-d encodings, Euclidean distance) so that
results compare one to one with that package, but only the models that
recognition needs are loaded (the 5-point model, the encoder and the CNN
detector's 0.7 MB network; not the 100 MB 68-point model), and they are loaded
by a constructor, never at import. A scan larger than its detector's `Banding`
runs in bands, so its memory is that of one band.

Thread safety, by construction:
- dlib's HOG detector is not safe to share between threads (shared, it
  segfaults under gunicorn threads), so each detection borrows a detector of its
  own from a pool and returns it after. The pool is filled when the engine loads,
  in the gunicorn master before fork, with copies of one built detector (building
  takes 0.4 s, a copy 3 ms), and grows only if more detections run at once.
  Detection releases the GIL, so threads detect in parallel.
- The shape predictor is shared under a lock: landmarks and the aligned chips
  take about a millisecond a face and hold the GIL anyway.
- The encoder (`faceapi.encoder.FaceEncoder`) keeps no state between calls and
  runs its matrix products with the GIL released, so threads encode in parallel.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import math
import os
import queue
import threading
from collections.abc import Iterator

import dlib
import numpy as np

from faceapi import yunet
from faceapi.cnn import CnnFaceDetector
from faceapi.cnn import Rect
from faceapi.cnn import pyramid_up
from faceapi.cnn import rect_down
from faceapi.encoder import BATCH_FACES
from faceapi.encoder import FaceEncoder
from faceapi.imaging import shrunk
from faceapi.matching import ENCODING_WIDTH
from faceapi.memory import scratch_from_the_heap
from faceapi.models import ModelPaths
from faceapi.models import model_id
from faceapi.scanning import DETECTORS
from faceapi.scanning import YUNET_MIN_CONFIDENCE


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

    def intersection(self, other: Box) -> Box:
        """The box both boxes cover (of no area when they do not meet)."""
        return Box(max(self.top, other.top), min(self.right, other.right), min(self.bottom, other.bottom),
                   max(self.left, other.left))

    def iou(self, other: Box) -> float:
        """Intersection over union of the two boxes' areas."""
        inner = self.intersection(other)
        union = self.area + other.area - inner.area
        return inner.area / union if union else 0.0

    @property
    def side(self) -> int:
        """The shorter side: how many pixels of face there are to encode."""
        return max(0, min(self.right - self.left, self.bottom - self.top))


@dataclasses.dataclass(frozen=True)
class Banding:
    """When and how a scan runs in bands (`FaceEngine.face_detections`).

    :param band_pixels: the most scanned pixels one scan or band covers: its memory (HOG about
        7.5 MB per million, measured in docs/BENCHMARKS.md).
    :param overlap_px: scanned rows (and columns) neighbouring bands share; faces up to 3/4 of it are
        found in the bands, larger ones by one coarser scan of the whole image.
    :param band_width_px: the widest band, in scanned pixels: wider scans are also cut into columns
        (None: bands span the scan's width).
    """

    band_pixels: int
    overlap_px: int
    band_width_px: int | None = None


WHOLE_SCAN = Banding(1 << 62, 288)  # one pass whatever the size: what bands are measured against
# HOG in bands of 4 MP (about 30 MB); YuNet in bands of 0.8 MP (about 50 MB: it needs 60 MB a megapixel, and
# a process runs one at a time), which scans a photo bounded to 896 px (its `FACEAPI_DETECT_SIDE_PX`) whole.
# The CNN bounds its own memory, exactly (`faceapi.cnn`: its pyramid and network are made in bands), so it
# scans whole.
BANDING = {"hog": Banding(4_000_000, 288), "cnn": WHOLE_SCAN, "yunet": Banding(800_000, 192, 1280)}
# The size, in scanned pixels, at which the faces too large for the bands show in the coarse scan that finds
# them: 1.3 times the smallest a detector finds; YuNet's boxes are steadier larger (docs/DETECTORS.md).
_COARSE_FACE_PX = {"hog": 1.3 * DETECTORS["hog"], "cnn": 1.3 * DETECTORS["cnn"], "yunet": 48}
# A HOG detector that scanned more pixels than this is replaced by a copy after (`FaceEngine._borrowed_detector`).
_HOG_KEEPS_PIXELS = 1_000_000
# Band tops sit on multiples of this many scanned rows, the cells of both detectors' first pyramid level,
# so a face found there gets the whole scan's box. Its other levels are resized from the level
# before to sizes that depend on the band's height: there a box can move by a cell (docs/BENCHMARKS.md).
_BAND_GRID = 8
# A coarse scan's face and a band's are the same face above this overlap.
_SAME_FACE_IOU = 0.4
# A face lying this much inside a larger one is a piece of it (faces do not nest): YuNet's cut boxes of a face
# larger than it sees whole.
_NESTED_SHARE = 0.6
# YuNet's face as the square box dlib's HOG gives it, which dlib's 5-point model was trained on, from YuNet's
# five points: centred between the eyes' and the mouth's middles, moved by these shares of the face's size
# (the larger of eyes-to-mouth and eye-to-eye, steady as the head turns or nods), its side this many sizes.
# Medians over 597 LFW photos both found; chips cut from the mapped box encode 0.039 (median) from the HOG
# box's, from YuNet's own box 0.071 (docs/DETECTORS.md).
_YUNET_TO_HOG = (-0.092, -0.016, 2.344)
# Each coarser YuNet level scans the image this many times smaller, for faces too large for the level before.
_YUNET_LEVEL_STEP = 4


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
        :param detectors: HOG detectors to copy now (3 ms each): as many as detections
            expected to run at once, so that no request waits for one to be built.
        """
        self._predictor = dlib.shape_predictor(str(paths.shape_predictor))
        self._encoder = FaceEncoder.load(paths.encoder)
        self._cnn = CnnFaceDetector.load(paths.cnn_detector or ModelPaths.from_package().cnn_detector)
        self._predictor_lock = threading.Lock()
        # One YuNet detection at a time in this process: it needs about 60 MB a megapixel while it runs.
        self._yunet_lock = threading.Lock()
        # Building dlib's detector takes about 0.4 s; a copy of a built one, 3 ms.
        self._pristine_detector = dlib.get_frontal_face_detector()
        self._detectors: queue.SimpleQueue[dlib.fhog_object_detector] = queue.SimpleQueue()
        for _ in range(detectors):
            self._detectors.put(copy.deepcopy(self._pristine_detector))
        self.model_id = model_id(paths)

    @classmethod
    def load(cls, detectors: int = 1) -> FaceEngine:
        """An engine on the models of the installed ``face_recognition_models`` package."""
        return cls(ModelPaths.from_package(), detectors)

    def face_locations(self, image: np.ndarray, scale: float, detector: str = "yunet") -> list[Box]:
        """Boxes of every face in ``image``, in its own coordinates, not trimmed (see `face_detections`)."""
        return [box for box, _ in self.face_detections(image, scale, detector)]

    def face_detections(self, image: np.ndarray, scale: float, detector: str = "yunet",
                        banding: Banding | None = None,
                        min_confidence: float = YUNET_MIN_CONFIDENCE) -> list[tuple[Box, float | None]]:
        """Every face in ``image``: its box (in ``image``'s coordinates, not trimmed) and the detector's
        confidence (YuNet's score in [0, 1], the CNN's score; None for HOG).

        :param scale: scanned pixels per pixel of ``image`` (`faceapi.scanning.ScanPlan`); the
            smallest face found is about ``DETECTORS[detector] / scale`` px. Above 1 the image
            is doubled by dlib (``upsample``) as often as needed, after shrinking it to the rest:
            2 is face_recognition's own scan, boxes and all, for either detector.
        :param detector: ``"yunet"`` (`faceapi.yunet`), ``"hog"`` (dlib's frontal HOG detector) or ``"cnn"``
            (dlib's MMOD CNN, on numpy).
        :param min_confidence: the score a YuNet face needs.

        A scan of more pixels than ``banding`` allows (None: the detector's `BANDING`) runs in
        overlapping bands, so its memory stays that of one band whatever the photo and the scale.
        """
        banding = banding or BANDING[detector]
        if scale * scale * image.shape[0] * image.shape[1] <= banding.band_pixels:
            found = self._whole_detections(image, scale, detector, min_confidence)
        else:
            found = self._banded_detections(image, scale, detector, banding, min_confidence)
        if detector != "yunet":
            return found
        large = yunet.LARGE_FACE_SHARE * min(image.shape[:2])
        return _without_nested([(box, confidence) for box, confidence in found
                                if box.side < large or confidence >= yunet.LARGE_FACE_CONFIDENCE])

    def _whole_detections(self, image: np.ndarray, scale: float, detector: str,
                          min_confidence: float) -> list[tuple[Box, float | None]]:
        """`face_detections` in one scan of the whole image.

        YuNet does not see faces larger than `faceapi.yunet.LARGEST_PX` whole: when the scan is larger
        than that, those faces come from a scan `_YUNET_LEVEL_STEP` times smaller, and so on.
        """
        scan, upsample, factor = _scanned(image, scale)
        found = [(box.scaled(factor), confidence)
                 for box, confidence in self._scan(scan, upsample, detector, min_confidence)]
        if detector != "yunet" or max(scan.shape[:2]) * 2**upsample <= yunet.LARGEST_PX:
            return found
        largest = yunet.LARGEST_PX * factor / 2**upsample  # in image pixels
        kept = [face for face in found if face[0].side <= largest]
        coarser = self._whole_detections(image, scale / _YUNET_LEVEL_STEP, detector, min_confidence)
        return kept + [(box, confidence) for box, confidence in coarser
                       if box.side > largest and not any(box.iou(other) > _SAME_FACE_IOU for other, _ in kept)]

    def _scan(self, scan: np.ndarray, upsample: int, detector: str,
              min_confidence: float) -> list[tuple[Box, float | None]]:
        """The faces one detector finds in ``scan``, doubled ``upsample`` times, in ``scan``'s pixels."""
        if detector == "yunet":
            for _ in range(upsample):
                scan = pyramid_up(scan)
            with self._yunet_lock, scratch_from_the_heap():
                faces = yunet.detect(scan, min_confidence)
            boxes = [(box, face.confidence) for face in faces if (box := _hog_like(face)).side >= yunet.SMALLEST_PX]
            for _ in range(upsample):
                boxes = [(_box_down(box), confidence) for box, confidence in boxes]
            return boxes
        if detector == "cnn":
            return [(Box(d.rect.top, d.rect.right, d.rect.bottom, d.rect.left), d.confidence)
                    for d in self._cnn.detect(scan, upsample, threads=_CNN_THREADS)]
        scanned_pixels = scan.shape[0] * scan.shape[1] * 4**upsample
        with self._borrowed_detector(replace=scanned_pixels > _HOG_KEEPS_PIXELS) as hog:
            return [(Box(r.top(), r.right(), r.bottom(), r.left()), None)
                    for r in hog(np.ascontiguousarray(scan), upsample)]

    def _banded_detections(self, image: np.ndarray, scale: float, detector: str, banding: Banding,
                           min_confidence: float) -> list[tuple[Box, float | None]]:
        """`face_detections` in horizontal bands of the scanned image, and one coarser scan.

        The image is shrunk and doubled once, as a whole scan would shrink and double it, and cut
        into bands whose tops sit on the detector's pyramid grid (`_BAND_GRID`), so a small face
        is seen in its band as in the whole image (and, wider than ``banding.band_width_px``, into
        columns alike). Neighbouring bands share ``banding.overlap_px`` scanned rows, and
        each band keeps only the faces whose centre lies in its own share of the rows and whose
        box lies inside it: a face up to 3/4 of the overlap lies whole in the band that owns its
        centre, so it is found once. Larger faces come from one scan of the whole image at a scale
        that finds faces of that size (itself banded if still too large), kept where no band's
        face overlaps them.
        """
        scan, upsample, factor = _scanned(image, scale)
        for _ in range(upsample):  # as the detector would double it, once for all bands
            scan = pyramid_up(scan)
        height, width = scan.shape[:2]
        overlap = _BAND_GRID * math.ceil(banding.overlap_px / _BAND_GRID)
        columns = _spans(width, banding.band_width_px or width, overlap)
        band_width = max(right - left for left, right in columns)
        rows = _spans(height, max(3 * overlap, banding.band_pixels // band_width), overlap)
        if len(rows) == len(columns) == 1:  # a very wide photo: no band would be smaller than the photo
            return self._whole_detections(image, scale, detector, min_confidence)
        # YuNet reports a face the band cuts as a smaller face inside the band: its bands keep only the faces
        # they see whole (up to 3/4 of the overlap), the coarse scan the others.
        largest = 0.75 * overlap if detector == "yunet" else math.inf

        def faces_owned(top: int, bottom: int, left: int, right: int) -> list[tuple[Box, float | None]]:
            kept = []
            for box, confidence in self._scan(scan[top:bottom, left:right], 0, detector, min_confidence):
                box = Box(box.top + top, box.right + left, box.bottom + top, box.left + left)
                if (box.side <= largest and _owned(box.top, box.bottom, top, bottom, height, overlap)
                        and _owned(box.left, box.right, left, right, width, overlap)):
                    for _ in range(upsample):
                        box = _box_down(box)
                    kept.append((box.scaled(factor), confidence))
            return kept

        # One band after another: two at once would hold twice the memory that banding bounds.
        found = [face for top, bottom in rows for left, right in columns
                 for face in faces_owned(top, bottom, left, right)]
        coarse_scale = min(scale, _COARSE_FACE_PX[detector] / (0.75 * overlap / 2**upsample * factor))
        if coarse_scale < scale:
            found += [(box, confidence)
                      for box, confidence in self.face_detections(image, coarse_scale, detector, banding,
                                                                  min_confidence)
                      if not any(box.iou(kept) > _SAME_FACE_IOU for kept, _ in found)]
        return found

    def face_encodings(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The ``(len(boxes), 128)`` float64 encodings of the faces at ``boxes`` in ``image``."""
        if not boxes:
            return np.empty((0, ENCODING_WIDTH))
        return self.chip_encodings(self.face_chips(image, boxes))

    def chip_encodings(self, chips: np.ndarray) -> np.ndarray:
        """The encodings of chips cut by `face_chips`: the image need not be kept while the network runs."""
        if len(chips) == 0:
            return np.empty((0, ENCODING_WIDTH))
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
    def _borrowed_detector(self, replace: bool = False) -> Iterator[dlib.fhog_object_detector]:
        """A detector no other thread uses until it is returned; with ``replace``, a fresh copy goes back instead.

        A detector keeps the feature pyramid of the last image it scanned, about 7 MB a million
        scanned pixels (21 MB after a 1126x661 photo doubled): one that scanned a large image is
        dropped for a copy, so that idle workers do not hold it.
        """
        try:
            detector = self._detectors.get_nowait()
        except queue.Empty:
            detector = copy.deepcopy(self._pristine_detector)
        try:
            yield detector
        finally:
            self._detectors.put(copy.deepcopy(self._pristine_detector) if replace else detector)


def _scanned(image: np.ndarray, scale: float) -> tuple[np.ndarray, int, float]:
    """What a detector scans for ``scale``: the image shrunk to ``scale / 2**upsample``, how often the
    detector doubles it (``upsample``), and the image's pixels per pixel of the shrunk copy."""
    upsample = max(0, math.ceil(math.log2(scale) - 1e-9))
    shrink = scale / 2**upsample
    # The decoder's draft scale has already done any large reduction.
    scan = shrunk(image, shrink) if shrink < 1 - 1e-6 else image
    return scan, upsample, max(image.shape[:2]) / max(scan.shape[:2])


def _spans(length: int, most: int, overlap: int) -> list[tuple[int, int]]:
    """Where bands of at most ``most`` scanned pixels (``overlap`` shared, starts on `_BAND_GRID`) cut ``length``."""
    step = _BAND_GRID * max(1, (most - overlap) // _BAND_GRID)
    if most >= length or step + overlap >= length:
        return [(0, length)]
    return [(start, min(length, start + step + overlap)) for start in range(0, length - overlap, step)]


def _owned(low: int, high: int, start: int, end: int, length: int, overlap: int) -> bool:
    """Whether the band ``[start, end)`` of a scan ``length`` long keeps a face spanning ``[low, high)`` along
    it: the face lies inside the band, and its centre in the band's own share (half the overlap each side)."""
    inside = (start == 0 or low >= start) and (end == length or high <= end)
    own_start = start + overlap / 2 if start > 0 else -math.inf
    own_end = end - overlap / 2 if end < length else math.inf
    return inside and own_start <= (low + high) / 2 < own_end


def _hog_like(face: yunet.Detection) -> Box:
    """The square box dlib's HOG detector gives the face YuNet found, from YuNet's five points (`_YUNET_TO_HOG`)."""
    (right_eye, left_eye, _, right_mouth, left_mouth) = np.array(face.points, dtype=np.float64)
    eyes, mouth = (right_eye + left_eye) / 2, (right_mouth + left_mouth) / 2
    size = max(np.linalg.norm(mouth - eyes), np.linalg.norm(right_eye - left_eye))
    shift_x, shift_y, side_share = _YUNET_TO_HOG
    centre_x, centre_y = (eyes + mouth) / 2 + (shift_x * size, shift_y * size)
    half = side_share * size / 2
    return Box(round(centre_y - half), round(centre_x + half), round(centre_y + half), round(centre_x - half))


def _without_nested(found: list[tuple[Box, float | None]]) -> list[tuple[Box, float | None]]:
    """``found`` without the boxes lying mostly inside a larger one (`_NESTED_SHARE`)."""
    def nested(box: Box) -> bool:
        return any(other.area > box.area and box.intersection(other).area > _NESTED_SHARE * box.area
                   for other, _ in found)

    return [face for face in found if not nested(face[0])]


def _box_down(box: Box) -> Box:
    """A box of a `pyramid_up` copy in the image it was made from, as dlib's detectors map it."""
    rect = rect_down(Rect(box.left, box.top, box.right, box.bottom))
    return Box(rect.top, rect.right, rect.bottom, rect.left)




# A CNN detection scans two bands of its network at once: about 1.7 times as fast on two cores (the
# pipeline runs one at a time per host: `faceapi.memory.host_wide_turn`).
_CNN_THREADS = min(2, os.cpu_count() or 1)
