"""Recompute ../shared/lfw's encodings through the service's pipeline, with a given detector, into a new file.

Usage: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/lfw_encodings.py OUT.npz [--detector yunet]

Same layout as ``encodings.npz`` (`files`, `found`, `encodings`): per photo, the encoding of the face nearest
the photo's centre, searched from 40 px as that file's were. ``bench/openset.py --encodings OUT.npz`` then
measures open-set identification on faces found and aligned by that detector.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import numpy as np

import common  # noqa: F401 - puts backend/ on sys.path
from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline

LFW = pathlib.Path(__file__).resolve().parents[2] / "shared/lfw"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--detector", default="yunet")
    args = parser.parse_args()
    files = [str(path.relative_to(LFW / "people")) for path in sorted((LFW / "people").glob("*/*.jpg"))]
    pipeline = Pipeline(FaceEngine.load(), dataclasses.replace(Settings(), detector=args.detector))
    found = np.zeros(len(files), bool)
    encodings = np.zeros((len(files), 128), np.float32)
    for index, name in enumerate(files):
        analysis = pipeline.find_faces((LFW / "people" / name).read_bytes(), 40)
        if analysis.faces:
            centre = (analysis.width / 2, analysis.height / 2)
            face = min(analysis.faces, key=lambda f: ((f.box.left + f.box.right) / 2 - centre[0]) ** 2
                       + ((f.box.top + f.box.bottom) / 2 - centre[1]) ** 2)
            found[index] = True
            encodings[index] = face.encoding
        if index % 1000 == 0:
            print(f"{index} / {len(files)}", flush=True)
    np.savez(args.out, files=np.array(files), found=found, encodings=encodings)
    print(f"{found.sum()} of {len(files)} photos with a face")


if __name__ == "__main__":
    main()
