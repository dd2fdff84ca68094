"""Latency and memory of the real service under gunicorn (the Procfile's settings).

Usage: .venv/bin/python bench/service.py [--repeats 15] [--workers 2]

Starts gunicorn on a free port with a throwaway store, enrolls obama.jpg, then
prints, per photo size, the median and p95 of sequential /recognize calls, and
the PSS (proportional set size, from /proc/<pid>/smaps_rollup) of the master plus
all workers: after boot, and after the timed requests.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time

from common import FACES
from common import all_pids
from common import phone_photo
from common import pss_mb
from tests.servers import GunicornServer
from tests.servers import upload


def total_pss_mb(server: GunicornServer) -> float:
    return pss_mb(all_pids(server))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    photos = {
        "480p (853x480)": (FACES / "examples/obama-480p.jpg").read_bytes(),
        "1080p (1920x1080)": (FACES / "examples/obama-1080p.jpg").read_bytes(),
        "12 MP (4000x3000)": phone_photo(4000, 3000),
        "group (two_people.jpg)": (FACES / "examples/two_people.jpg").read_bytes(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": str(args.workers), "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}
        started = time.perf_counter()
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            print(f"boot to ready: {time.perf_counter() - started:.2f} s", flush=True)
            client = server.client()
            reference = upload(FACES / "tests/test_images/obama.jpg")
            enrolled = client.post("/enroll", data={"name": "obama", "image": reference})
            assert enrolled.status_code == 201, enrolled.json
            time.sleep(0.5)
            print(f"PSS master + {args.workers} workers after boot: {total_pss_mb(server):.0f} MB", flush=True)
            print("photo | p50 s | p95 s | faces")
            for label, data in photos.items():
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    response = client.post("/recognize", data={"image": upload(data, "photo.jpg")})
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.json
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                names = [face["name"] for face in response.json["faces"]]
                print(f"{label} | {statistics.median(times):.3f} | {p95:.3f} | {names}", flush=True)
            print(f"PSS master + {args.workers} workers after the requests: {total_pss_mb(server):.0f} MB")
    print(f"machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
