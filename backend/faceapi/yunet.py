"""YuNet, the face detector of libfacedetection (Shiqi Yu et al., BSD-3; weights compiled into the ``yuface`` wheel).

A 2023 anchor-free network trained on WIDER FACE: it finds faces from about 10 px up, turned
and small ones included, at about 0.06-0.09 s a megapixel on two cores (docs/DETECTORS.md).
Two limits of the network shape how `faceapi.engine` uses it:

- Faces larger than about `LARGEST_PX` scanned pixels come out cut or twice, so a scan larger
  than that is followed by a coarser one for the larger faces (`faceapi.engine`).
- Its memory grows with the pixels scanned (about 60 MB a megapixel while it runs), so scans over 1.3 MP
  run in bands, and one detection runs at a time on the host (`faceapi.memory.host_wide_detection`).

The call holds the GIL and spreads over the cores on libgomp's threads (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from yuface.yuface import detect as _yuface_detect

# The score a face needs by default (`FACEAPI_MIN_DETECTION_CONFIDENCE`; measured: docs/DETECTORS.md).
MIN_CONFIDENCE = 0.75
# A box this share of the photo's shorter side or larger needs at least `LARGE_FACE_CONFIDENCE`: YuNet scores
# the photo's subject 0.85 or more (every one of 800 LFW photos, faces about 45% of the side), while boxes on
# paintings, hands and foliage that large scored 0.57-0.81 (docs/DETECTORS.md).
LARGE_FACE_SHARE = 0.25
LARGE_FACE_CONFIDENCE = 0.85
# Faces smaller than this many scanned pixels are not reported: most of YuNet's boxes below it, at any score,
# were not faces in the benchmark (docs/DETECTORS.md). The scan plan searches from 20 (`faceapi.scanning`).
SMALLEST_PX = 16
# Faces with a side longer than this many scanned pixels are not found whole (measured: docs/DETECTORS.md).
LARGEST_PX = 400
# The five points YuNet gives: eye centres (the person's right first), nose tip, mouth corners.
_POINTS = 5


@dataclasses.dataclass(frozen=True)
class Detection:
    """A face YuNet found: its box in scanned pixels (``left``, ``top``, ``width``, ``height``), its score in
    [0, 1] and its five points (eye centres, nose tip, mouth corners) as ``(x, y)``."""

    left: int
    top: int
    width: int
    height: int
    confidence: float
    points: tuple[tuple[int, int], ...]


def detect(rgb: np.ndarray, min_confidence: float) -> list[Detection]:
    """The faces of an ``(h, w, 3)`` uint8 RGB image scoring at least ``min_confidence``, strongest first."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"the image must be (h, w, 3) uint8, not {rgb.shape} {rgb.dtype}")
    if min(rgb.shape[:2]) < 8:
        return []
    rows = _yuface_detect(np.ascontiguousarray(rgb[:, :, ::-1]))  # the network reads BGR
    found = []
    for row in rows.astype(np.int64):
        confidence = row[0] / 100
        if confidence >= min_confidence:
            points = tuple((int(row[5 + 2 * i]), int(row[6 + 2 * i])) for i in range(_POINTS))
            found.append(Detection(int(row[1]), int(row[2]), int(row[3]), int(row[4]), confidence, points))
    return sorted(found, key=lambda d: -d.confidence)
