"""Soak: load for a bounded time with max_requests recycling workers; memory must stay bounded, no request may fail.

Usage: .venv/bin/python bench/soak.py [--seconds 180] [--concurrency 4] [--max-requests 60]

Starts gunicorn (gunicorn.conf.py; GUNICORN_CMD_ARGS lowers max_requests so workers
recycle often), then runs closed-loop clients sending a mix of photos of every size,
enrollments, deletions and hostile uploads. Every answer must be the expected one.
Prints PSS of master + workers every 15 s, and at the end: duration, requests,
errors, workers recycled, memory at start and end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import random
import tempfile
import threading
import time

from common import FACES
from common import all_pids
from common import phone_photo
from common import pss_mb
from tests.servers import GunicornServer
from tests.servers import upload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=60)
    args = parser.parse_args()
    photos = [
        (FACES / "examples/obama-480p.jpg").read_bytes(),
        (FACES / "examples/obama-1080p.jpg").read_bytes(),
        (FACES / "examples/knn_examples/test/obama_and_biden.jpg").read_bytes(),
        phone_photo(4000, 3000),
    ]
    obama = (FACES / "tests/test_images/obama.jpg").read_bytes()
    # (form builder, path, method, accepted statuses)
    actions = [
        *[(lambda p=p: {"image": upload(p, "p.jpg")}, "/recognize", "POST", {200}) for p in photos],
        (lambda: {"image": upload(b"\x89PNG\r\n\x1a\n garbage", "x.png")}, "/recognize", "POST", {415}),
        (lambda: {"image": upload(obama[: len(obama) // 3], "cut.jpg")}, "/recognize", "POST", {415}),
        (lambda: {"name": f"soak{random.randrange(20)}", "image": upload(obama, "o.jpg")}, "/enroll", "POST", {201}),
        (None, "/people/soak{n}", "DELETE", {200, 404}),
        (None, "/people", "GET", {200}),
    ]
    stats = {"requests": 0, "errors": 0}
    lock = threading.Lock()
    seen_workers: set[int] = set()

    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": "2", "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl",
               "GUNICORN_CMD_ARGS": f"--max-requests {args.max_requests} --max-requests-jitter 10"}
        with GunicornServer(pathlib.Path(scratch) / "soak.log", env) as server:
            client = server.client()
            assert client.post("/enroll", {"name": "obama", "image": upload(obama, "o.jpg")}).status_code == 201
            for data in photos:  # warm up both workers' first-request allocations
                client.post("/recognize", {"image": upload(data, "p.jpg")})
            start_pss = pss_mb(all_pids(server))
            print(f"start: PSS master + workers {start_pss:.0f} MB", flush=True)
            deadline = time.monotonic() + args.seconds

            def worker(seed: int) -> None:
                rng = random.Random(seed)
                while time.monotonic() < deadline:
                    form, path, method, accepted = rng.choice(actions)
                    path = path.format(n=rng.randrange(20))
                    try:
                        response = server.client().request(method, path, form() if form else None)
                        ok = response.status_code in accepted
                    except OSError:
                        ok = False
                    with lock:
                        stats["requests"] += 1
                        stats["errors"] += not ok

            samples = []
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                futures = [pool.submit(worker, seed) for seed in range(args.concurrency)]
                while not all(future.done() for future in futures):
                    time.sleep(15)
                    seen_workers.update(server.worker_pids())
                    samples.append(pss_mb(all_pids(server)))
                    print(f"  t={len(samples) * 15:4d}s requests={stats['requests']} errors={stats['errors']} "
                          f"PSS={samples[-1]:.0f} MB", flush=True)
                for future in futures:
                    future.result()
            end_pss = pss_mb(all_pids(server))
            log = server.log()
    recycled = log.count("Autorestarting worker")
    print(f"duration {args.seconds:.0f} s, concurrency {args.concurrency}, requests {stats['requests']}, "
          f"errors {stats['errors']}, workers recycled {recycled}, "
          f"PSS start {start_pss:.0f} MB, end {end_pss:.0f} MB, max sampled {max(samples, default=0):.0f} MB")


if __name__ == "__main__":
    main()
