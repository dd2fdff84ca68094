"""What a growing gallery costs each store: an enroll of 100 faces, and a recognition right after another
worker's write, at 1 000 to 100 000 faces in one collection.

Usage: .venv/bin/python bench/gallery_scale.py [--sizes 1000 10000 100000]
                                               [--url postgresql://postgres@127.0.0.1:5432/test]
                                               [--pgvector-url $TEST_PGVECTOR_URL] [--rules open-set nearest]

Two handles on one store stand for two workers: one enrolls 100 made-up encodings (the median of 5
enrolls is timed), the other then recognizes one encoding (timed: the reload or the query that the write
causes), and once more when nothing changed; last, the first removes one face of each newcomer (timed:
an erasure, the median of 5). PostgreSQL runs in throwaway schemas, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import numpy as np

from common import throwaway_store
from faceapi import openset
from faceapi.store import FaceRecord
from faceapi.store import open_store

MODEL = "bench-model"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pgvector-url", default=os.environ.get("TEST_PGVECTOR_URL"))
    parser.add_argument("--stores", nargs="+", default=["pickle", "postgres", "pgvector"])
    parser.add_argument("--rules", nargs="+", default=["open-set"], choices=["open-set", "nearest"],
                        help="what a recognition asks: the open-set decision (as /recognize), or only the nearest "
                             "person (as before issue 29)")
    args = parser.parse_args()
    kinds = {kind: server for kind, server in {"pickle": None, "postgres": args.url,
                                                "pgvector": args.pgvector_url}.items() if kind in args.stores}
    print(f"{'store':10}{'rule':>9}{'faces':>9}{'enroll 100':>12}{'recognize after':>17}{'quiet':>9}{'delete 1':>10}")
    for kind, server in kinds.items():
        if kind != "pickle" and not server:
            continue
        for size in args.sizes:
            for rule in args.rules:
                with throwaway_store(server) as where:
                    enroll_ms, after_ms, quiet_ms, delete_ms = measure(where, size, rule)
                print(f"{kind:10}{rule:>9}{size:>9}{enroll_ms:>10.1f}ms{after_ms:>15.1f}ms{quiet_ms:>7.1f}ms"
                      f"{delete_ms:>8.1f}ms", flush=True)


def measure(where: str, size: int, rule: str) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(size)
    writer, reader = open_store(where, MODEL), open_store(where, MODEL)
    encodings = rng.normal(scale=1 / np.sqrt(128), size=(size, 128)).astype(np.float32)
    writer.import_faces([FaceRecord(uuid.uuid4().hex, f"person {i // 2}", row) for i, row in enumerate(encodings)])
    query = encodings[:1]

    def recognize() -> None:
        if rule == "nearest":
            reader.nearest(query, 1)
        else:
            openset.identify(reader, query, 0.01)

    recognize()
    enrolls, afters, quiets, deletes, added = [], [], [], [], []
    for round_index in range(5):
        batch = rng.normal(scale=1 / np.sqrt(128), size=(100, 128)).astype(np.float32)
        start = time.perf_counter()
        added.append(writer.add_faces(f"newcomer {round_index}", batch))
        enrolls.append(time.perf_counter() - start)
        start = time.perf_counter()
        recognize()
        afters.append(time.perf_counter() - start)
        start = time.perf_counter()
        recognize()
        quiets.append(time.perf_counter() - start)
    for enrollment in added:
        start = time.perf_counter()
        writer.remove_face(enrollment.name, enrollment.face_ids[0])
        deletes.append(time.perf_counter() - start)
    writer.close()
    reader.close()
    return tuple(statistics.median(values) * 1000 for values in (enrolls, afters, quiets, deletes))


if __name__ == "__main__":
    main()
