"""Where a request's time goes: the floor of each stage, per photo, in one thread.

Usage: .venv/bin/python bench/stages.py [--repeats 7]

Runs the service's own code in-process with the default settings (no HTTP): decode
(`imaging.decode_image`), detection (`FaceEngine.face_locations`), landmarks and aligned
chips (`FaceEngine.face_chips`), the network (`FaceEncoder.encode`), and matching against
a 1000-face gallery plus the JSON of the answer. One BLAS thread, as in a worker. Prints
the median of each stage in milliseconds; the largest is the next lever.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


import numpy as np

from common import median_ms
from common import photo_mix
from faceapi.config import Settings
from faceapi.encoder import FaceEncoder
from faceapi.engine import FaceEngine
from faceapi.imaging import decode_image
from faceapi.matching import Gallery
from faceapi.models import ModelPaths
from faceapi.openset import match_faces
from faceapi.pipeline import Pipeline
from tests.photos import class_photo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    pipeline = Pipeline(FaceEngine.load(), Settings())
    encoder = FaceEncoder.load(ModelPaths.from_package().encoder)
    rng = np.random.default_rng(0)
    gallery = Gallery.build([f"p{i}" for i in range(1000)], rng.normal(size=(1000, 128)).astype(np.float32) / 11)
    photos = {**photo_mix("examples/two_people.jpg"), "12 MP class, 40 faces of 240 px": class_photo(240)}
    print("photo | faces | decode | detect | landmarks + chips | network | match + JSON | total (ms)")
    for label, data in photos.items():
        faces, times = stage_times(data, pipeline, encoder, gallery, args.repeats)
        print(f"{label} | {faces} | " + " | ".join(f"{ms:.1f}" for ms in times) + f" | {sum(times):.1f}", flush=True)
    total, _ = median_ms(lambda: pipeline.find_faces(photos["12 MP"]), args.repeats)
    print(f"the pipeline's own call on the 12 MP photo, for comparison: {total:.1f} ms")


def stage_times(data: bytes, pipeline: Pipeline, encoder: FaceEncoder, gallery: Gallery,
                repeats: int) -> tuple[int, list[float]]:
    """(faces found, the median milliseconds of each stage) for one photo, decoded and scanned as the pipeline does."""
    settings, engine = pipeline.settings, pipeline.engine
    decode, image = median_ms(lambda: decode_image(
        data, max_side_px=lambda header: pipeline.decode_side(header.width, header.height, None,
                                                                        pipeline.settings.detector),
        max_pixels=settings.max_image_pixels,
        max_full_decode_pixels=settings.max_full_decode_pixels), repeats)
    pixels = image.pixels
    scale = pipeline.detect.plan(image.width, image.height).scale * image.scale
    detect, boxes = median_ms(lambda: engine.face_locations(pixels, scale), repeats)
    chips_ms, chips = median_ms(lambda: engine.face_chips(pixels, boxes), repeats)
    network, encodings = median_ms(lambda: encoder.encode(chips), repeats)

    def answer() -> str:
        matches = match_faces(gallery, encodings, settings.false_match_rate)
        return json.dumps({"faces": [{"box": {"top": b.top, "right": b.right, "bottom": b.bottom, "left": b.left},
                                      "name": m.name, "distance": m.distance}
                                     for b, m in zip(boxes, matches, strict=True)]})

    match, _ = median_ms(answer, repeats)
    return len(boxes), [decode, detect, chips_ms, network, match]


if __name__ == "__main__":
    main()
