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
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backend")]

import numpy as np  # noqa: E402
from tests.photos import class_photo  # noqa: E402
from tests.servers import FACES  # noqa: E402

from bench.compare import phone_photo  # noqa: E402
from faceapi.config import Settings  # noqa: E402
from faceapi.encoder import FaceEncoder  # noqa: E402
from faceapi.engine import FaceEngine  # noqa: E402
from faceapi.engine import ModelPaths  # noqa: E402
from faceapi.imaging import decode_image  # noqa: E402
from faceapi.matching import Gallery  # noqa: E402
from faceapi.matching import match_faces  # noqa: E402
from faceapi.services import detect_options  # noqa: E402


def median_ms(call: Callable[[], object], repeats: int) -> tuple[float, object]:
    result = call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    settings = Settings()
    engine = FaceEngine.load(detect_options(settings))
    encoder = FaceEncoder.load(ModelPaths.from_package().encoder)
    rng = np.random.default_rng(0)
    gallery = Gallery.build([f"p{i}" for i in range(1000)], rng.normal(size=(1000, 128)).astype(np.float32) / 11)
    photos = {
        "480p": (FACES / "examples/obama-480p.jpg").read_bytes(),
        "1080p": (FACES / "examples/obama-1080p.jpg").read_bytes(),
        "12 MP, one face": phone_photo(4000, 3000),
        "group (two_people.jpg)": (FACES / "examples/two_people.jpg").read_bytes(),
        "12 MP class, 40 faces of 240 px": class_photo(240),
    }
    print("photo | faces | decode | detect | landmarks + chips | network | match + JSON | total (ms)")
    for label, data in photos.items():
        faces, times = stage_times(data, settings, engine, encoder, gallery, args.repeats)
        print(f"{label} | {faces} | " + " | ".join(f"{ms:.1f}" for ms in times) + f" | {sum(times):.1f}", flush=True)


def stage_times(data: bytes, settings: Settings, engine: FaceEngine, encoder: FaceEncoder, gallery: Gallery,
                repeats: int) -> tuple[int, list[float]]:
    """(faces found, the median milliseconds of each stage) for one photo."""
    decode, image = median_ms(lambda: decode_image(
        data, max_side_px=settings.encode_side_px, max_pixels=settings.max_image_pixels,
        max_full_decode_pixels=settings.max_full_decode_pixels), repeats)
    pixels = image.pixels
    detect, boxes = median_ms(lambda: engine.face_locations(pixels), repeats)
    chips_ms, chips = median_ms(lambda: engine.face_chips(pixels, boxes), repeats)
    network, encodings = median_ms(lambda: encoder.encode(chips), repeats)

    def answer() -> str:
        matches = match_faces(gallery, encodings, settings.tolerance)
        return json.dumps({"faces": [{"box": {"top": b.top, "right": b.right, "bottom": b.bottom, "left": b.left},
                                      "name": m.name, "distance": m.distance}
                                     for b, m in zip(boxes, matches, strict=True)]})

    match, _ = median_ms(answer, repeats)
    return len(boxes), [decode, detect, chips_ms, network, match]

if __name__ == "__main__":
    main()
