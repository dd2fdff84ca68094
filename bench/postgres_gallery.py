"""PostgreSQL store: the per-request refresh cost and the time to load a large gallery.

Usage: .venv/bin/python bench/postgres_gallery.py [--faces 100000] [--url postgresql://postgres@127.0.0.1:5432/test]
Works in a throwaway schema, dropped at the end. Synthetic encodings (random float32).
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np
import psycopg
from psycopg import sql

from common import median_ms
from faceapi.store import FaceRecord
from faceapi.store.postgres import PostgresStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        store = PostgresStore(f"{args.url}?options=-csearch_path%3D{schema}", "bench-model")
        encodings = np.random.default_rng(1).normal(size=(args.faces, 128)).astype(np.float32)
        print(f"inserting {args.faces} faces ...", flush=True)
        start = time.perf_counter()
        for offset in range(0, args.faces, 10_000):
            batch = encodings[offset:offset + 10_000]
            store.import_faces([FaceRecord(uuid.uuid4().hex, f"person{(offset + i) // 4}", row)
                                for i, row in enumerate(batch)])
        print(f"insert: {time.perf_counter() - start:.1f} s", flush=True)

        def cold_load() -> None:
            store._galleries = {}  # force the full reload a changed version causes
            store.gallery()

        print(f"full gallery load ({args.faces} faces), median of 5: {median_ms(cold_load, 5)[0]:.0f} ms")
        print(f"refresh check when unchanged (per request), median of 200: {median_ms(store.gallery, 200)[0]:.2f} ms")
        store.close()
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
