"""YuNet, HOG and dlib's CNN through the pipeline, side by side: faces found and time, per labelled photo.

Usage: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/detectors.py [--repeats 3]

For every photo of ../shared/faces with its face count in measured_hog.json (face_recognition's
HOG at full resolution, upsampled once), runs the service's pipeline (decode, scan, no encoding)
with each detector: at the default settings, and searching from 40 px (face_recognition's scale
for both its models). Prints faces found and the median time, then the totals; last, the CNN on a 1024 px group photo
searching from 40 px (issue 19's target: at most 1.5 s on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import json

from PIL import Image

from common import FACES
from common import median_ms
from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline

VARIANTS = {"YuNet, default": ("yunet", None), "HOG, default": ("hog", None), "CNN, default": ("cnn", None),
            "YuNet, from 40 px": ("yunet", 40), "HOG, from 40 px": ("hog", 40),
            "CNN, from 40 px": ("cnn", 40)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    measured = json.loads((FACES / "measured_hog.json").read_text())["images"]
    pipeline = Pipeline(FaceEngine.load(), Settings())
    totals = {variant: [0, 0.0] for variant in VARIANTS}
    print("photo | face_recognition HOG faces | " + " | ".join(f"{v}: faces, ms" for v in VARIANTS))
    for relative, info in sorted(measured.items()):
        data = (FACES / relative).read_bytes()
        cells = []
        for variant, (detector, min_face_px) in VARIANTS.items():
            ms, analysis = median_ms(lambda: pipeline.find_faces(data, min_face_px, detector=detector,  # noqa: B023
                                                                 encode=False), args.repeats)
            totals[variant][0] += len(analysis.faces)
            totals[variant][1] += ms
            cells.append(f"{len(analysis.faces)}, {ms:.0f}")
        print(f"{relative} | {len(info['face_locations_hog_upsample1'])} | " + " | ".join(cells), flush=True)
    expected = sum(len(info["face_locations_hog_upsample1"]) for info in measured.values())
    print(f"total | {expected} | " + " | ".join(f"{faces}, {ms:.0f}" for faces, ms in totals.values()))
    group_photo_from_40_px(args.repeats)


def group_photo_from_40_px(repeats: int) -> None:
    """The CNN on a 1024 px group photo (two_people.jpg, 1024x601) searching from 40 px: at the default cap and
    at FACEAPI_CNN_MAX_SCAN_PIXELS=3000000, through the pipeline (the network on two threads, as served)."""
    buffer = io.BytesIO()
    Image.open(FACES / "examples/two_people.jpg").resize((1024, 601), Image.Resampling.LANCZOS).save(buffer, "JPEG",
                                                                                                    quality=92)
    engine = FaceEngine.load()
    print("\nCNN, 1024x601 group photo, min_face_px=40 | faces | searched from | limited | median ms")
    for label, settings in (("default cap", Settings()), ("3 MP cap", Settings(cnn_max_scan_pixels=3_000_000))):
        pipeline = Pipeline(engine, settings)
        ms, analysis = median_ms(lambda: pipeline.find_faces(buffer.getvalue(), 40, detector="cnn"),  # noqa: B023
                                 repeats)
        print(f"{label} | {len(analysis.faces)} | {analysis.plan.min_face_px} px | {analysis.plan.limited} | {ms:.0f}")


if __name__ == "__main__":
    main()
