"""Default scan side vs time and faces found, on the photos in ../shared/faces.

Usage: .venv/bin/python bench/detect_tradeoff.py [--repeats 3]
Prints, per FACEAPI_DETECT_SIDE_PX (faces of 40 px at most searched, as by default), the median
detection time per photo size and
how many faces were found on the group photos, next to the smallest face found.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from faceapi.engine import FaceEngine  # noqa: E402
from faceapi.imaging import decode_image  # noqa: E402
from faceapi.scanning import DetectOptions  # noqa: E402

FACES = ROOT.parent / "shared" / "faces"
PHOTOS = {
    "480p": "examples/obama-480p.jpg",
    "1080p": "examples/obama-1080p.jpg",
    "obama3 2333px": "tests/test_images/obama3.jpg",
    "group kit_with_rose": "examples/knn_examples/test/kit_with_rose.jpg",
    "group obama_and_biden": "examples/knn_examples/test/obama_and_biden.jpg",
    "group two_people": "examples/two_people.jpg",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = {
        label: decode_image((FACES / path).read_bytes(), max_side_px=1600, max_pixels=10**9).pixels
        for label, path in PHOTOS.items()
    }
    print("scan side | " + " | ".join(f"{label} s (faces, smallest px)" for label in images))
    for side in (640, 960, 1280, 1600, None):
        engine = FaceEngine.load(DetectOptions(scan_side_px=side))
        cells = []
        for _label, pixels in images.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                boxes = engine.face_locations(pixels)
                times.append(time.perf_counter() - start)
            smallest = min((b.bottom - b.top for b in boxes), default=0)
            cells.append(f"{statistics.median(times):.3f} ({len(boxes)}, {smallest})")
        print(f"{side or 'full'} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
