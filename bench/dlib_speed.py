"""Per-face speed of whichever dlib this interpreter has: the source-build variant against the default.

Usage: <python> bench/dlib_speed.py [--repeats 20]

Prints dlib's build flags (AVX, BLAS), the HOG detector on obama.jpg (upsampled once, as
face_recognition does), and dlib's own encoder (``compute_face_descriptor``, one face).
Run with the project's .venv it also times faceapi's encoder (dlib's network on numpy's
BLAS), which is what the service uses: `bench/install_time.sh --source-build` runs it with
both interpreters, side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dlib  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "faces" / "tests" / "test_images" / "obama.jpg"


def median_ms(call, repeats: int) -> float:
    """Median wall time of ``call`` (after one warm-up). Not shared with the other benchmarks: this script
    also runs in a bare virtualenv that holds only dlib, numpy, Pillow and the models."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    spec = importlib.util.find_spec("face_recognition_models")
    models = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    [rect] = detector(image, 1)
    shape = predictor(image, rect)
    print(f"dlib {dlib.__version__} at {pathlib.Path(dlib.__file__).parent}: "
          f"AVX={dlib.USE_AVX_INSTRUCTIONS} BLAS={dlib.DLIB_USE_BLAS} LAPACK={dlib.DLIB_USE_LAPACK}")
    print(f"HOG detection, obama.jpg upsampled once: {median_ms(lambda: detector(image, 1), args.repeats):.1f} ms")
    dlib_ms = median_ms(lambda: encoder.compute_face_descriptor(image, shape, 1), args.repeats)
    print(f"dlib's encoder, one face: {dlib_ms:.1f} ms")
    try:
        sys.path.insert(0, str(ROOT / "backend"))
        from faceapi.encoder import FaceEncoder
    except ImportError:
        return
    ours = FaceEncoder.load(models / "dlib_face_recognition_resnet_model_v1.dat")
    chip = np.stack([dlib.get_face_chip(image, shape, size=150, padding=0.25)])
    print(f"faceapi's encoder (numpy BLAS), one face: {median_ms(lambda: ours.encode(chip), args.repeats):.1f} ms")


if __name__ == "__main__":
    main()
