"""A 12 MP class photo of 40 faces: faceapi (real gunicorn, default settings) next to face_recognition.

Usage: .venv/bin/python bench/class_photo.py [--face-px 240] [--repeats 3] [--min-face-px N]
       [--max-scan-pixels N] [--skip-peer]

``--min-face-px`` is sent with each request (default: none, the server's default scan);
``--max-scan-pixels`` sets FACEAPI_MAX_SCAN_PIXELS for the server (12000000 lets a 12 MP
photo be scanned at full size for 80 px faces; it needs about 450 MB for two workers).

The photo is built by `tests.photos.class_photo` from head crops of ../shared/faces (40 faces of
``--face-px`` on a 4000x3000 canvas). faceapi answers POST /recognize; face_recognition 1.3.0 (the
oracle, installed by ./scripts/test) runs `face_locations` (HOG, upsample 1, full resolution) and
`face_encodings` on the same decoded pixels, in this process. Prints the medians, the faces each found,
and the ratio.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

import common  # noqa: F401 - puts the repository on sys.path
from tests.photos import class_photo
from tests.servers import GunicornServer
from tests.servers import upload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--face-px", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-face-px", type=int)
    parser.add_argument("--max-scan-pixels", type=int)
    parser.add_argument("--skip-peer", action="store_true", help="time faceapi only")
    args = parser.parse_args()
    fields = {} if args.min_face_px is None else {"min_face_px": str(args.min_face_px)}
    photo = class_photo(args.face_px)
    ours, found, detection = [], 0, {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": "2", "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}
        if args.max_scan_pixels:
            env["FACEAPI_MAX_SCAN_PIXELS"] = str(args.max_scan_pixels)
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                response = server.client().post("/recognize", {"image": upload(photo, "class.jpg"), **fields})
                ours.append(time.perf_counter() - start)
                assert response.status_code == 200, response.json
                found = len(response.json["faces"])
                detection = response.json["detection"]
    ours = ours[1:]  # the first request warms the worker
    searched = f"searched from {detection['min_face_px']} px, limited: {detection['limited']}"
    print(f"faceapi: {found} faces ({searched}), median {statistics.median(ours):.2f} s over {len(ours)}", flush=True)
    if args.skip_peer:
        return

    from tests.oracle import face_recognition

    pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    theirs, their_found = [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        locations = face_recognition.face_locations(pixels)
        face_recognition.face_encodings(pixels, locations)
        theirs.append(time.perf_counter() - start)
        their_found = len(locations)
    print(f"face_recognition: {their_found} faces, median {statistics.median(theirs):.2f} s over {len(theirs)}")
    print(f"faceapi is {statistics.median(theirs) / statistics.median(ours):.1f}x faster ({args.face_px} px faces)")


if __name__ == "__main__":
    main()
