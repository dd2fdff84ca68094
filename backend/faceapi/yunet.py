"""YuNet, the face detector of libfacedetection (Shiqi Yu et al., BSD-3; weights compiled into the ``yuface`` wheel).

A 2023 anchor-free network trained on WIDER FACE: it finds faces from about 10 px up, turned
and small ones included, at about 0.12 s a megapixel on one core, 0.08 s on two (docs/DETECTORS.md).
Two limits of the network shape how `faceapi.engine` uses it:

- Faces larger than about `LARGEST_PX` scanned pixels come out cut or twice, so a scan larger
  than that is followed by a coarser one for the larger faces (`faceapi.engine`).
- Its memory grows with the pixels scanned (about 60 MB a megapixel while it runs), so large scans run in
  bands, and a process runs one detection at a time (`faceapi.engine`).

The network runs with the GIL released, on two of libgomp's threads, which sleep between detections
(``OMP_WAIT_POLICY=PASSIVE``, set here unless the environment says otherwise).
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import os
import pathlib

import numpy as np

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
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the network reads BGR
    results = np.zeros(_RESULT_BYTES // 4, np.int32)
    _omp_set_num_threads(_THREADS)
    _facedetect_cnn(results.ctypes.data, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.strides[0])
    count = int(results[0])
    rows = results[1:1 + count * _ROW_SHORTS // 2].view(np.int16).reshape(count, _ROW_SHORTS).astype(np.int64)
    found = []
    for row in rows:
        confidence = row[0] / 100
        if confidence >= min_confidence:
            points = tuple((int(row[5 + 2 * i]), int(row[6 + 2 * i])) for i in range(_POINTS))
            found.append(Detection(int(row[1]), int(row[2]), int(row[3]), int(row[4]), confidence, points))
    return sorted(found, key=lambda d: -d.confidence)


def _load_omp_set_num_threads() -> ctypes._CFuncPtr:
    """``omp_set_num_threads`` of the libgomp the wheel bundles (and libfacedetection uses): it sets the
    threads of the calling thread's parallel regions."""
    [libgomp] = (_PACKAGE.parent / "yuface.libs").glob("libgomp*.so*")
    function = ctypes.CDLL(str(libgomp)).omp_set_num_threads
    function.restype = None
    function.argtypes = [ctypes.c_int]
    return function


def _load_facedetect_cnn() -> ctypes._CFuncPtr:
    """libfacedetection's own entry point, from the wheel: ``int* facedetect_cnn(unsigned char* result_buffer,
    unsigned char* bgr, int width, int height, int step)``.

    Called through ctypes rather than the wheel's Python binding, which holds the GIL for the whole
    detection (0.1 s a megapixel) and returns coordinates as unsigned (a box reaching past the left or
    top edge came back near 65 535). ctypes releases the GIL while the network runs.
    """
    library = ctypes.CDLL(str(_PACKAGE / "libfacedetection.so"))
    function = library._Z14facedetect_cnnPhS_iii  # the C++ name of facedetect_cnn(uchar*, uchar*, int, int, int)
    function.restype = ctypes.POINTER(ctypes.c_int)
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return function


# libfacedetection's result buffer (DETECT_BUFFER_SIZE): the face count, then 16 shorts a face (score 0-100,
# x, y, width, height, five points, one unused), room for 1 151 faces.
_RESULT_BYTES = 0x9000
_ROW_SHORTS = 16
# The wheel's folder, found without importing its binding (which would load libgomp before the line below).
_PACKAGE = pathlib.Path(importlib.util.find_spec("yuface").submodule_search_locations[0])
# Two cores a detection: 1.2-1.5 times as fast alone. libgomp's threads then wait for the next detection
# asleep, not spinning (read when the library loads): spinning, they took 10% of the service's throughput
# under load (docs/DETECTORS.md).
_THREADS = 2
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_facedetect_cnn = _load_facedetect_cnn()
_omp_set_num_threads = _load_omp_set_num_threads()
