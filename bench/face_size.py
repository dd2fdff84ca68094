"""How small a face can be and still be encoded reliably: the figure behind ``face_too_small``.

Usage: .venv/bin/python bench/face_size.py [--sizes 24,32,40,48,56,64,72,80,96,120,150]

Each one-face photo of ../shared/faces (the knn training set, one folder per person, plus
obama.jpg's test copies) is shrunk with Pillow's LANCZOS so that its face's box is S px
across (as a camera further away would take it), found again with the service's engine,
and encoded. Printed per size: how far the encodings drift from the full-size ones
(median and max), and how many match decisions against every other photo's full-size
encoding (same person means distance <= 0.6) differ from the full-size decisions.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


import numpy as np
from PIL import Image

from common import FACES
from faceapi.engine import FaceEngine
from faceapi.engine import largest_first

TOLERANCE = 0.6


def photos() -> list[tuple[str, pathlib.Path]]:
    """(person, path) of every one-face photo: the knn training folders, and the test images of one face."""
    train = FACES / "examples/knn_examples/train"
    found = [(folder.name, path) for folder in sorted(train.iterdir()) for path in sorted(folder.iterdir())]
    extra = [("obama", FACES / "tests/test_images/obama3.jpg"),
             ("alex_lacamoire", FACES / "examples/alex-lacamoire.png"),
             ("lin_manuel_miranda", FACES / "examples/lin-manuel-miranda.png")]
    return found + extra


def encode_at(engine: FaceEngine, image: Image.Image, face_side: float | None) -> tuple[np.ndarray, int]:
    """The encoding of the largest face of ``image`` shrunk so that face is ``face_side`` px (None: as it is)."""
    if face_side is not None:
        image = image.resize((max(1, round(image.width * face_side)), max(1, round(image.height * face_side))),
                             Image.LANCZOS)
    pixels = np.asarray(image)
    boxes = largest_first(engine.face_locations(pixels, scale=3.0, detector="hog"), 1)
    if not boxes:
        return np.full(128, np.nan), 0
    return engine.face_encodings(pixels, boxes)[0], boxes[0].side


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="24,32,40,48,56,64,72,80,96,120,150")
    args = parser.parse_args()
    engine = FaceEngine.load()
    people, images, full = [], [], []
    for person, path in photos():
        image = Image.open(path).convert("RGB")
        encoding, side = encode_at(engine, image, None)
        people.append(person)
        images.append((image, side))
        full.append(encoding)
    full_matrix = np.stack(full)
    same = np.array([[a == b for b in people] for a in people])
    full_decisions = np.linalg.norm(full_matrix[:, None] - full_matrix[None], axis=2) <= TOLERANCE
    print(f"{len(people)} photos, {len(set(people))} people; full-size faces {min(s for _, s in images)}-"
          f"{max(s for _, s in images)} px")
    print("face px | drift median | drift max | decisions changed (of N) | wrong matches | missed same-person")
    for size in (int(value) for value in args.sizes.split(",")):
        drifts, changed, wrong, missed, total = [], 0, 0, 0, 0
        for index, (image, side) in enumerate(images):
            encoding, _ = encode_at(engine, image, size / side)
            if np.isnan(encoding).any():
                drifts.append(float("inf"))
                continue
            drifts.append(float(np.linalg.norm(encoding - full_matrix[index])))
            decisions = np.linalg.norm(full_matrix - encoding, axis=1) <= TOLERANCE
            for other in range(len(people)):
                if other == index:
                    continue
                total += 1
                changed += decisions[other] != full_decisions[index, other]
                wrong += decisions[other] and not same[index, other]
                missed += (not decisions[other]) and same[index, other]
        drift = f"{statistics.median(drifts):.3f} | {max(drifts):.3f}"
        print(f"{size} | {drift} | {changed} of {total} | {wrong} | {missed}", flush=True)


if __name__ == "__main__":
    main()
