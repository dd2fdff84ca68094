"""Phone photos through the real service: per format and size, the answer, the decode time and the peak memory.

Each photo is two_people.jpg written as a phone writes it (tests/photos.py `phone_format`). The service
(gunicorn, two workers) runs in a memory cgroup with room to spare; each photo is sent alone, several
times, and the cgroup's peak is read after each kind (reset between kinds on cgroup v2 by a fresh group).
Decode time is measured in-process (`imaging.decode_image` at the side the pipeline asks for), median of
``--repeats``.

    .venv/bin/python bench/phone_photos.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceapi.config import Settings  # noqa: E402
from faceapi.engine import FaceEngine  # noqa: E402
from faceapi.imaging import decode_image  # noqa: E402
from faceapi.pipeline import Pipeline  # noqa: E402
from tests.cgroup import memory_cgroup  # noqa: E402
from tests.photos import phone_format  # noqa: E402
from tests.servers import GunicornServer  # noqa: E402
from tests.servers import upload  # noqa: E402

KINDS = [("jpeg", 12), ("ultra_hdr", 12), ("ultra_hdr_sideways", 12), ("heic", 12), ("heic_sideways", 12),
         ("heic_one_picture", 12), ("avif", 12), ("webp", 12), ("png", 12), ("png", 4), ("jpeg", 48),
         ("ultra_hdr", 48), ("heic", 24), ("heic", 48), ("avif", 16), ("webp", 16)]


def decode_ms(pipeline: Pipeline, data: bytes, repeats: int) -> float:
    settings = pipeline.settings
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode_image(data, max_side_px=lambda header: pipeline.decode_side(header.width, header.height, None,
                                                                        pipeline.settings.detector),
                     max_pixels=settings.max_image_pixels, max_full_decode_pixels=settings.max_full_decode_pixels)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pipeline = Pipeline(FaceEngine.load(), Settings(workers=1))
    print("| photo | bytes | answer | faces (names) | decode, ms (median) | request, ms (median) | cgroup peak, MB |")
    print("|---|---|---|---|---|---|---|")
    for kind, megapixels in KINDS:
        data = phone_format(kind, megapixels)
        decode = decode_ms(pipeline, data, args.repeats)
        with tempfile.TemporaryDirectory() as scratch, memory_cgroup(1024 * 2**20) as group:
            env = {"WEB_CONCURRENCY": "2", "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl",
                   "FACEAPI_UPLOAD_LIMIT_BYTES": str(64 * 2**20)}
            with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env, launcher=group.launcher) as server:
                client = server.client()
                for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
                    image = ROOT.parent / "shared/faces/tests/test_images" / photo
                    client.post("/enroll", data={"name": name, "image": upload(image)})
                times, response = [], None
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    response = client.post("/recognize", data={"image": upload(data, f"photo.{kind}")})
                    times.append((time.perf_counter() - start) * 1000)
                names = sorted(face["name"] or "unknown" for face in response.json.get("faces", []))
                print(f"| {kind} {megapixels} MP | {len(data):,} | {response.status_code} | {len(names)} "
                      f"({', '.join(names)}) | {decode:.0f} | {statistics.median(times):.0f} | "
                      f"{group.peak_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()
