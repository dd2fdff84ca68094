"""gunicorn workers x threads x image slots on 1 and 2 cores: throughput, errors and peak memory under one load.

Usage: .venv/bin/python bench/concurrency.py [--seconds 15] [--concurrency 8] [--cores 0,1]
Each configuration runs the real service pinned with taskset to the given cores,
under a closed loop of clients sending a mix of 480p, 1080p, group and 12 MP photos.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

from common import FACES
from common import phone_photo
from compare import throughput
from tests.servers import GunicornServer
from tests.servers import upload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cores", action="append", help="taskset core lists (default: 0, then 0,1)")
    parser.add_argument("--config", action="append", help="WORKERSxTHREADSxSLOTS, e.g. 1x4x2 (default: a set)")
    args = parser.parse_args()
    mix = [
        (FACES / "examples/obama-480p.jpg").read_bytes(),
        (FACES / "examples/obama-1080p.jpg").read_bytes(),
        (FACES / "examples/knn_examples/test/obama_and_biden.jpg").read_bytes(),
        phone_photo(4000, 3000),
    ]
    header = f"| cores | workers x threads x image slots | req/s at c={args.concurrency} | errors | peak PSS MB |"
    print(header + "\n|---|---|---|---|---|")
    configs = [tuple(int(n) for n in config.split("x")) for config in args.config or ()] or [
        (1, 1, 1), (1, 4, 1), (1, 4, 2), (2, 1, 1), (2, 4, 1), (2, 4, 2), (4, 1, 1)]
    for cores in args.cores or ("0", "0,1"):
        for workers, threads, slots in configs:
            with tempfile.TemporaryDirectory() as scratch:
                env = {"WEB_CONCURRENCY": str(workers), "FACEAPI_THREADS": str(threads),
                       "FACEAPI_MAX_CONCURRENT_IMAGES": str(slots), "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}
                log = pathlib.Path(scratch) / "g.log"
                with GunicornServer(log, env, launcher=["taskset", "-c", cores]) as server:
                    obama = upload(FACES / "tests/test_images/obama.jpg")
                    enrolled = server.client().post("/enroll", {"name": "obama", "image": obama})
                    assert enrolled.status_code == 201
                    rps, errors, peak = throughput(server, mix, args.concurrency, args.seconds)
            core_count = len(cores.split(","))
            print(f"| {core_count} | {workers} x {threads} x {slots} | {rps:.2f} | {errors} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
