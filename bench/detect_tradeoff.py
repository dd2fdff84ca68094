"""Default scan side vs time and faces found, on the photos in ../shared/faces.

Usage: .venv/bin/python bench/detect_tradeoff.py [--repeats 3]
Prints, per FACEAPI_DETECT_SIDE_PX (0: no bound), the median time of the pipeline's detection
(decode and scan as the service does them, without encoding) per photo, how many faces were
found, and the smallest face found.
"""

from __future__ import annotations

import argparse

from common import FACES
from common import median_ms
from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline

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
    engine = FaceEngine.load()
    photos = {label: (FACES / path).read_bytes() for label, path in PHOTOS.items()}
    print("scan side | " + " | ".join(f"{label} s (faces, smallest px)" for label in photos))
    for side in (640, 960, 1280, 1600, 0):
        pipeline = Pipeline(engine, Settings(detect_side_px=side))
        cells = []
        for data in photos.values():
            seconds, analysis = median_ms(lambda: pipeline.find_faces(data, encode=False), args.repeats)  # noqa: B023
            smallest = min((face.box.bottom - face.box.top for face in analysis.faces), default=0)
            cells.append(f"{seconds / 1000:.3f} ({len(analysis.faces)}, {smallest})")
        print(f"{side or 'full'} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
