"""Does an enrolled face find its person in pgvector, at gallery sizes above exact search?

Usage: .venv/bin/python bench/pgvector_recall.py [--faces 150000] [--url $TEST_PGVECTOR_URL]
                                                 [--m 16] [--ef-construction 64] [--shape lfw|gaussian]

Faces are enrolled as the API enrolls them, a person a call through `PostgresStore.add_faces`, so the
HNSW graph grows insert by insert (not built once after a bulk load). The gallery is shaped like real
encodings: each made-up person is a real LFW encoding (../shared/lfw/encodings.npz) moved by about 0.7
in a random direction, so people lie as far apart as strangers do, and each of their three faces lies
about 0.4 from it. Then, for the first faces enrolled and the last, two questions to `nearest`:
a face's own encoding (its person must come first, at distance 0), and a new face of its person
(its person must come first whenever exact search in numpy puts it first). Also top_k=2: how often two
distinct people come back. A throwaway schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import throwaway_store  # noqa: E402
from faceapi.store import postgres  # noqa: E402
from faceapi.store.postgres import PostgresStore  # noqa: E402

LFW = pathlib.Path(__file__).resolve().parents[2] / "shared/lfw/encodings.npz"
MODEL = "bench-recall"
FACES_PER_PERSON = 3


def made_up_people(count: int, rng: np.random.Generator) -> np.ndarray:
    real = np.load(LFW)["encodings"]
    real = real[np.linalg.norm(real, axis=1) > 0]
    return real[rng.integers(0, len(real), count)] + rng.normal(0, 0.7 / np.sqrt(128), (count, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=150_000)
    parser.add_argument("--url", default=os.environ.get("TEST_PGVECTOR_URL"))
    parser.add_argument("--m", type=int, default=postgres.HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=postgres.HNSW_EF_CONSTRUCTION)
    parser.add_argument("--probes", type=int, default=200, help="faces asked about, first and last enrolled each")
    parser.add_argument("--shape", choices=("lfw", "gaussian"), default="lfw",
                        help="people from real encodings, or Gaussian made-up ones (HNSW's hardest case)")
    args = parser.parse_args()
    postgres.HNSW_M, postgres.HNSW_EF_CONSTRUCTION = args.m, args.ef_construction
    rng = np.random.default_rng(7)
    count = args.faces // FACES_PER_PERSON
    people = made_up_people(count, rng) if args.shape == "lfw" else rng.normal(0, 1 / np.sqrt(128), (count, 128))
    faces = np.repeat(people, FACES_PER_PERSON, axis=0) + rng.normal(0, 0.4 / np.sqrt(128), (len(people) * 3, 128))
    names = [f"p{i}" for i in range(len(people)) for _ in range(FACES_PER_PERSON)]
    with throwaway_store(args.url) as url:
        store = PostgresStore(url, MODEL, pgvector="on")
        start = time.perf_counter()
        for person in range(len(people)):  # a call per person, as enroll-dir sends a person's photos
            first = person * FACES_PER_PERSON
            store.add_faces(names[first], faces[first:first + FACES_PER_PERSON])
        load_s = time.perf_counter() - start
        print(f"{args.shape}: m={args.m} ef_construction={args.ef_construction} ef_search={postgres._EF_SEARCH}: "
              f"{len(faces)} faces enrolled in {load_s:.0f} s")
        for label, rows in (("first enrolled", range(args.probes)),
                            ("last enrolled", range(len(faces) - args.probes, len(faces)))):
            rows = list(rows)
            own = store.nearest(faces[rows], 1)
            self_found = sum(bool(c) and c[0].name == names[i] and c[0].distance < 1e-3
                             for i, c in zip(rows, own, strict=True))
            probes = faces[rows] + rng.normal(0, 0.4 / np.sqrt(128), (len(rows), 128))
            started = time.perf_counter()
            answers = store.nearest(probes, 2)
            ms = (time.perf_counter() - started) * 1000 / len(rows)
            exact = exact_nearest(faces, names, probes)
            agree = sum(bool(a) and a[0].name == e for a, e in zip(answers, exact, strict=True))
            two = sum(len(a) == 2 for a in answers)
            print(f"  {label}: own encoding finds its person {self_found}/{len(rows)}; a new face's nearest "
                  f"person as exact search {agree}/{len(rows)}; top_k=2 gives two people {two}/{len(rows)}; "
                  f"{ms:.1f} ms a face")
        store.close()


def exact_nearest(faces: np.ndarray, names: list[str], probes: np.ndarray) -> list[str]:
    found = []
    for probe in probes:
        distances = np.linalg.norm(faces - probe, axis=1)
        found.append(names[int(np.argmin(distances))])
    return found


if __name__ == "__main__":
    main()
