"""Decode + detect + encode of a one-face 12 MP photo and a 1080p photo, in-process, for one checkout.

Usage: .venv/bin/python bench/one_face_ab.py CHECKOUT   (run it for two checkouts, alternating, to compare)

Uses CHECKOUT's backend and tests, the service's default settings and malloc tuning, one BLAS thread
(set OPENBLAS_NUM_THREADS=1 as gunicorn.conf.py does); prints the median of 7 runs per photo.
"""

from __future__ import annotations

import statistics
import sys
import time

root = sys.argv[1]
sys.path[:0] = [root, root + "/backend"]

from faceapi.config import Settings  # noqa: E402
from faceapi.engine import FaceEngine  # noqa: E402
from faceapi.imaging import decode_image  # noqa: E402
from faceapi.memory import tune_malloc  # noqa: E402
from tests.servers import FACES  # noqa: E402


def main() -> None:
    settings = Settings()
    tune_malloc()
    try:  # issue 18 and later: the pipeline, bytes in
        from faceapi.pipeline import Pipeline
        pipeline = Pipeline(FaceEngine.load(), settings)

        def find(data):  # noqa: ANN001, ANN202
            return pipeline.find_faces(data).faces
    except ImportError:  # before it: a scan plan per image, the engine's own find_faces
        from faceapi.services import detect_options
        options = detect_options(settings)
        engine = FaceEngine.load(options)

        def find(data):  # noqa: ANN001, ANN202
            image = decode_image(data, max_side_px=settings.encode_side_px, max_pixels=10**9)
            return engine.find_faces(image.pixels, options.plan(image.width, image.height).scale * image.scale)

    try:  # issue 18 and later
        from tests.photos import phone_photo
    except ImportError:
        from tests.test_gunicorn import _twelve_megapixel_jpeg as phone_photo
    photos = {"12 MP": phone_photo(), "1080p": (FACES / "examples/obama-1080p.jpg").read_bytes()}
    for label, data in photos.items():
        times, faces = [], []
        for _ in range(7):
            start = time.perf_counter()
            faces = find(data)
            times.append(time.perf_counter() - start)
        print(f"{root} {label}: {len(faces)} face(s), median {statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
