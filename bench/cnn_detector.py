"""dlib's CNN face detector: faceapi's numpy port next to dlib's own, same image, same scale, side by side.

Usage: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/cnn_detector.py [--repeats 5]

For each photo and upsample count, prints the median time of one detection by each (faceapi on
one thread, and on two threads scanning bands at once as the service does), the ratios, and
whether the two agree (same boxes, scores within 1e-3). Run it with OPENBLAS_NUM_THREADS=1, as
the service runs: each thread's products on one core. dlib's wheel uses one core.
"""

from __future__ import annotations

import argparse

import dlib
import numpy as np
from PIL import Image

from common import FACES
from common import median_ms
from faceapi.cnn import CnnFaceDetector
from faceapi.models import ModelPaths

PHOTOS = {
    "two_people.jpg / 2 (331x563)": ("examples/two_people.jpg", 2, 0),
    "two_people.jpg / 3, upsampled (221x376)": ("examples/two_people.jpg", 3, 1),
    "two_people.jpg (661x1126)": ("examples/two_people.jpg", 1, 0),
    "obama_and_biden.jpg / 2": ("examples/knn_examples/test/obama_and_biden.jpg", 2, 0),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = ModelPaths.from_package().cnn_detector
    ours, theirs = CnnFaceDetector.load(path), dlib.cnn_face_detection_model_v1(str(path))
    print("photo | upsample | faceapi ms, 1 thread | faceapi ms, 2 threads | dlib ms | dlib / faceapi (1, 2) | agree")
    for label, (relative, step, upsample) in PHOTOS.items():
        image = np.ascontiguousarray(np.asarray(Image.open(FACES / relative).convert("RGB"))[::step, ::step])
        ours_ms, found = median_ms(lambda: ours.detect(image, upsample), args.repeats)  # noqa: B023
        two_ms, _ = median_ms(lambda: ours.detect(image, upsample, threads=2), args.repeats)  # noqa: B023
        dlib_ms, expected = median_ms(lambda: theirs(image, upsample), max(1, args.repeats // 2))  # noqa: B023
        agree = len(found) == len(expected) and all(
            (d.rect.left, d.rect.top, d.rect.right, d.rect.bottom) == (e.rect.left(), e.rect.top(), e.rect.right(),
                                                                       e.rect.bottom())
            and abs(d.confidence - e.confidence) < 1e-3 for d, e in zip(found, expected, strict=False))
        print(f"{label} | {upsample} | {ours_ms:.0f} | {two_ms:.0f} | {dlib_ms:.0f} | "
              f"{dlib_ms / ours_ms:.1f}x, {dlib_ms / two_ms:.1f}x | {agree}", flush=True)


if __name__ == "__main__":
    main()
