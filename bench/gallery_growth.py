"""A gallery growing to 100 000 faces in the real service: memory of the instance, enroll and recognize.

Usage: .venv/bin/python bench/gallery_growth.py [--sizes 1000 10000 30000 60000 100000] [--workers 2]
                                                [--database-url postgresql://...]

Starts gunicorn (the Procfile's settings, ``--workers`` workers) on a throwaway store (the pickle file, or
a throwaway schema of ``--database-url``), then enrolls made-up encodings as JSON, 100 to a request, as a
growing user would (the method of issue 21's table). At each size it prints: an enroll of 100 faces
(median of 9), a recognize of one encoding right after an enroll (median of 9; the enroll went to one
worker, the recognize to either: half of them run on the worker that did not write), a quiet recognize
(median of 9), the PSS of master + workers, and its growth since the empty gallery.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import statistics
import tempfile
import time
import uuid

import numpy as np

from common import all_pids
from common import pss_mb
from common import throwaway_store
from tests.servers import GunicornServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 30_000, 60_000, 100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    rng = np.random.default_rng(21)
    with tempfile.TemporaryDirectory() as scratch, throwaway_store(args.database_url) as where:
        store = {"DATABASE_URL": where} if args.database_url else {"FACEAPI_STORE_PATH": where}
        env = {**store, "WEB_CONCURRENCY": str(args.workers)}
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            query = json.dumps({"encodings": batch(rng, 1).tolist()}).encode()

            def recognize() -> float:
                start = time.perf_counter()
                post_json(server.port, "/recognize", query, 200)
                return time.perf_counter() - start

            def enroll(count: int) -> float:
                body = json.dumps({"name": f"person {uuid.uuid4().hex[:8]}",
                                   "encodings": batch(rng, count).tolist()}).encode()
                start = time.perf_counter()
                post_json(server.port, "/enroll", body, 201)
                return time.perf_counter() - start

            for _ in range(4):
                recognize()
            time.sleep(0.5)
            empty = pss_mb(all_pids(server))
            print(f"PSS master + {args.workers} workers, empty gallery: {empty:.1f} MB")
            print(f"{'faces':>8}{'enroll 100':>12}{'recognize after':>17}{'quiet':>9}{'PSS':>10}{'growth':>9}")
            enrolled = 0
            for size in args.sizes:
                while enrolled < size - 900:
                    enroll(100)
                    enrolled += 100
                enrolls, afters, quiets = [], [], []
                for _ in range(9):
                    enrolls.append(enroll(100))
                    afters.append(recognize())
                    quiets.append(recognize())
                    enrolled += 100
                for _ in range(6):
                    recognize()  # every worker has the latest gallery before memory is read
                time.sleep(0.5)
                pss = pss_mb(all_pids(server))
                print(f"{enrolled:>8}{ms(enrolls):>10.1f}ms{ms(afters):>15.1f}ms{ms(quiets):>7.1f}ms"
                      f"{pss:>8.1f}MB{pss - empty:>7.1f}MB", flush=True)


def post_json(port: int, path: str, body: bytes, expected: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        assert response.status == expected, answer[:300]
    finally:
        connection.close()


def batch(rng: np.random.Generator, count: int) -> np.ndarray:
    """Made-up encodings shaped like dlib's (length about 1 in 128 dimensions)."""
    return np.round(rng.normal(scale=1 / np.sqrt(128), size=(count, 128)), 6)


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


if __name__ == "__main__":
    main()
