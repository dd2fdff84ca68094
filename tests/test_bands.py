"""Scans in bands: every face of a whole scan found once, with its box, in the memory of one band."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faceapi.engine import WHOLE_SCAN
from faceapi.engine import Banding
from faceapi.engine import Box
from faceapi.engine import FaceEngine
from tests.conftest import face_photo
from tests.photos import class_photo

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _class_photo(face_px: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(class_photo(face_px, size=size))).convert("RGB"))


def _two_people() -> np.ndarray:
    return np.asarray(Image.open(face_photo("examples/two_people.jpg")).convert("RGB"))


# (photo, detector, scale, band pixels): shrunk, at full size and doubled; faces on band seams.
CASES = {
    "class 80 px, HOG at 0.9": (lambda: _class_photo(80, (2000, 1500)), "hog", 0.9, 500_000),
    "class 40 px, HOG doubled": (lambda: _class_photo(40, (1000, 750)), "hog", 2.0, 500_000),
    "two_people.jpg, HOG at 1.5": (_two_people, "hog", 1.5, 1_000_000),
    "class 80 px, CNN at 1": (lambda: _class_photo(80, (2000, 1500)), "cnn", 1.0, 1_000_000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bands_find_every_face_of_the_whole_scan_once(engine: FaceEngine, monkeypatch, case: str) -> None:
    """Each face of the whole scan is found once; most boxes are the whole scan's to the pixel (those of the
    pyramid's first level, whose grid the bands keep), the rest within a cell of a coarser level, which moves
    the encoding less than scanning the whole photo at a scale 1.5% smaller does."""
    make, detector, scale, band_pixels = CASES[case]
    image = make()
    whole = [box for box, _ in engine.face_detections(image, scale, detector, WHOLE_SCAN)]
    scans = []
    monkeypatch.setattr(engine, "_scan", lambda *args, scan=engine._scan: scans.append(args) or scan(*args))
    banded = [box for box, _ in engine.face_detections(image, scale, detector, Banding(band_pixels, 288))]
    assert len(scans) >= 3, "the scan did not run in bands"
    assert len(whole) >= 2 and len(banded) == len(whole)
    matched = [max(banded, key=box.iou) for box in whole]
    assert len(set(matched)) == len(whole), "a face was found twice, or two faces as one"
    ious = [a.iou(b) for a, b in zip(whole, matched, strict=True)]
    assert min(ious) > 0.6 and sum(iou == 1 for iou in ious) >= 0.85 * len(whole), ious
    moved = [box for box, iou in zip(whole, ious, strict=True) if iou < 1]
    if moved:
        rescaled = [box for box, _ in engine.face_detections(image, scale * 0.985, detector, WHOLE_SCAN)]
        drift = _largest_encoding_distance(engine, image, whole, rescaled)
        assert _largest_encoding_distance(engine, image, whole, matched) <= max(drift, 0.03)


def _largest_encoding_distance(engine: FaceEngine, image: np.ndarray, boxes: list[Box], others: list[Box]) -> float:
    """The largest distance between each box's encoding and that of the other box most like it."""
    nearest = [max(others, key=box.iou) for box in boxes]
    return float(np.linalg.norm(engine.face_encodings(image, boxes) - engine.face_encodings(image, nearest),
                                axis=1).max())


def test_a_large_face_comes_from_the_coarse_scan(engine: FaceEngine) -> None:
    """A face taller than the bands' overlap is found once, by the coarser scan, and where the whole scan finds it."""
    image = _two_people()
    banding = Banding(200_000, 96)  # bands of about 180 rows sharing 96: both faces (about 190 px) span two
    whole = [box for box, _ in engine.face_detections(image, 1.0, "hog", WHOLE_SCAN)]
    banded = [box for box, _ in engine.face_detections(image, 1.0, "hog", banding)]
    assert len(whole) == len(banded) == 2
    assert all(max(banded, key=box.iou).iou(box) > 0.5 for box in whole)


_PEAK_SCRIPT = """
import io, sys
import numpy as np
from PIL import Image
from faceapi.engine import WHOLE_SCAN, FaceEngine
from tests.photos import class_photo

def rss_mb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

engine = FaceEngine.load()
image = np.asarray(Image.open(io.BytesIO(class_photo(80))).convert("RGB"))
detector, scale = sys.argv[2], float(sys.argv[3])
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # the peak (VmHWM) starts again from now
before = rss_mb("VmRSS")
found = engine.face_detections(image, scale, detector, WHOLE_SCAN if sys.argv[1] == "whole" else None)
print(len(found), rss_mb("VmHWM") - before)
"""


@pytest.mark.parametrize(("detector", "scale", "most_mb"), [("hog", 0.9, 45), ("yunet", 0.5, 90)])
def test_a_fine_scan_of_a_12_mp_photo_needs_the_memory_of_one_band(detector: str, scale: float,
                                                                   most_mb: float) -> None:
    """The 12 MP class photo searched from 80 px: by HOG 9.7 MP scanned (29 MB of pixels), in bands its peak
    is about that copy (measured: 17-30 MB), in one pass twice that (63 MB); by YuNet 3 MP scanned, in bands
    of at most 1.3 MP (at most 80 MB; measured: 41 MB), in one pass 139 MB."""
    peaks = {}
    for mode in ("whole", "banded"):
        result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, mode, detector, str(scale)],
                                capture_output=True, text=True, check=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'backend'}"})
        faces, peaks[mode] = result.stdout.split()
        assert int(faces) == 40
    assert float(peaks["banded"]) < most_mb and float(peaks["banded"]) < 0.7 * float(peaks["whole"]), peaks
