"""How hard to look for faces: the scan plan of one upload.

Pure arithmetic, no dlib: the engine carries the plan out. dlib's HOG face detector
slides an 80 px window over an image pyramid (each level 5/6 of the one before); on the
pyramid's first level that window reports a 72 px box, the smallest it ever reports, and
faces that small are found (40 of 40 on the class photos of tests/photos.py). To find
faces of ``m`` px in an upload, the upload is scanned at ``72 / m`` scanned pixels per
uploaded pixel, and the cost grows with the pixels scanned: that is the one lever, and a
cap bounds it.
"""

from __future__ import annotations

import dataclasses
import math

# The smallest face box dlib's frontal face detector reports, in scanned pixels.
SMALLEST_BOX_PX = 72
# The smallest face each detector finds, in scanned pixels: YuNet's (90% of the WIDER FACE faces 20-40 px
# wide found at the photo's own size: docs/DETECTORS.md), HOG's, and the CNN's 80x80 window on its
# pyramid's first level. The first is the default detector.
DETECTORS = {"yunet": 20, "hog": SMALLEST_BOX_PX, "cnn": 80}
# The longest side each detector scans a photo over `FACEAPI_FULL_SEARCH_PIXELS` at when neither the request nor
# `FACEAPI_DETECT_SIDE_PX` says: at YuNet's 896 px the service serves as many requests as with HOG's 1280 px in
# the same memory (a 12 MP photo: faces from 90 px, HOG's from 225 px; docs/DETECTORS.md).
DEFAULT_SCAN_SIDE_PX = {"yunet": 896, "hog": 1280, "cnn": 1280}
# The score a YuNet face needs by default (`FACEAPI_MIN_DETECTION_CONFIDENCE`): the lowest that boxed no hand or
# painting in the labelled photos; 245 of 304 WIDER FACE faces of 20 px and more (docs/DETECTORS.md).
YUNET_MIN_CONFIDENCE = 0.75
# The smallest face each detector searches for when neither the request nor `FACEAPI_MIN_FACE_PX` says:
# YuNet at the photo's own size; HOG and the CNN from 36 px, as face_recognition's HOG searches (upsampled once).
DEFAULT_MIN_FACE_PX = {"yunet": 20, "hog": 36, "cnn": 36}


@dataclasses.dataclass(frozen=True)
class ScanPlan:
    """How one upload is scanned.

    :param scale: scanned pixels per uploaded pixel, along each side (above 1: upsampled).
    :param min_face_px: the smallest face height searched, in uploaded pixels.
    :param limited: the pixel cap made the scan coarser than asked (``min_face_px`` is larger).
    :param detector: which detector scans (`DETECTORS`).
    """

    scale: float
    min_face_px: int
    limited: bool
    detector: str = "yunet"


@dataclasses.dataclass(frozen=True)
class DetectOptions:
    """What a scan looks for when the caller does not say, and what it may cost at most
    (the defaults are settings: `faceapi.pipeline.detect_options`).

    :param min_face_px: the smallest face searched by default, in uploaded pixels (None: the detector's own,
        `DEFAULT_MIN_FACE_PX`).
    :param scan_side_px: by default, photos of more than ``full_search_pixels`` are scanned at
        most at this longest side: their default smallest face grows with the photo
        (``DETECTORS[detector] * longest / scan_side_px``), so that their default cost stays that of a
        ``scan_side_px`` image. None: the detector's own (`DEFAULT_SCAN_SIDE_PX`); 0: no such bound.
    :param full_search_pixels: photos of at most this many pixels are searched from
        ``min_face_px`` by default, as face_recognition searches them (its HOG upsamples once).
    :param max_scan_pixels: the most pixels any YuNet or HOG scan may cover; a finer scan asked for is
        clamped to it and reported as limited.
    :param cnn_max_scan_pixels: the same for the CNN, which costs far more per pixel.
    """

    min_face_px: int | None
    scan_side_px: int | None
    max_scan_pixels: int
    cnn_max_scan_pixels: int
    full_search_pixels: int = 0

    def plan(self, width: int, height: int, min_face_px: int | None = None, detector: str = "yunet") -> ScanPlan:
        """The scan of a ``width`` x ``height`` upload for faces of ``min_face_px`` (None: the default)."""
        smallest = DETECTORS[detector]
        if min_face_px is None:
            scale = smallest / (self.min_face_px or DEFAULT_MIN_FACE_PX[detector])
            side = DEFAULT_SCAN_SIDE_PX[detector] if self.scan_side_px is None else self.scan_side_px
            if side and width * height > self.full_search_pixels:
                scale = min(scale, side / max(width, height))
        else:
            scale = smallest / min_face_px
        cap = self.cnn_max_scan_pixels if detector == "cnn" else self.max_scan_pixels
        limited = scale * scale * width * height > cap
        if limited:
            scale = math.sqrt(cap / (width * height))
        min_face_px = math.ceil(smallest / scale - 1e-6)
        return ScanPlan(scale, min_face_px, limited, detector)
