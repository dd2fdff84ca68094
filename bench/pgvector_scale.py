"""A million faces in pgvector: match time through the HNSW index, its recall against exact search,
and what an instance holds.

Usage: .venv/bin/python bench/pgvector_scale.py [--faces 1000000] [--queries 300]
                                                [--url $TEST_PGVECTOR_URL, from scripts/ensure-pgvector]

Works in a throwaway schema of a PostgreSQL server with pgvector, dropped at the end. The gallery is
made up but shaped like real encodings: people are points of norm about 1, and each of their 1 to 4
faces lies about 0.35 from its person (real same-person distances are 0.3-0.5, strangers 0.8 and more).
Faces are loaded with COPY into one collection and the HNSW index is built afterwards (timed). Queries
are new faces of enrolled people (another 0.35 away) and strangers. For each: `PostgresStore.nearest`
(the service's query: the planner, the index, ef_search 100), and exact search over the same faces in
numpy; recall@1 is how often the index returns the exact nearest face's person, and the decisions at
tolerance 0.6 (the name, or unknown) are compared, for each ``--ef-search`` value. Then a gunicorn
instance on the schema answers JSON recognitions, and its PSS is compared with one on an empty schema.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import statistics
import tempfile
import time
import uuid

import numpy as np
import psycopg
from psycopg import sql

from common import all_pids
from common import pss_mb
from faceapi.matching import Gallery
from faceapi.matching import decide
from faceapi.matching import nearest_people
from faceapi.store import postgres
from faceapi.store.postgres import PostgresStore
from faceapi.store.postgres import _vector_text
from tests.servers import GunicornServer

MODEL = "bench-model"
SPREAD = 0.35 / np.sqrt(128)  # per dimension: a face about 0.35 from its person


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--url", default=os.environ.get("TEST_PGVECTOR_URL"))
    parser.add_argument("--m", type=int, default=16, help="HNSW's links per node (pgvector's default 16)")
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW build candidates (default 64)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[postgres._EF_SEARCH],
                        help="hnsw.ef_search values to time (the service uses the first default)")
    args = parser.parse_args()
    if not args.url:
        raise SystemExit("give --url, or set TEST_PGVECTOR_URL (./scripts/ensure-pgvector prints one)")
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(args.url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    urls = [f"{args.url}&options=-csearch_path%3D{schema}%2Cpublic" for schema in schemas]
    try:
        run(args, *urls)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def run(args: argparse.Namespace, url: str, empty_url: str) -> None:
    rng = np.random.default_rng(11)
    people = max(1, args.faces // 2)
    centres = rng.normal(scale=1 / np.sqrt(128), size=(people, 128)).astype(np.float32)
    owners = np.sort(rng.integers(0, people, size=args.faces))
    faces = (centres[owners] + rng.normal(scale=SPREAD, size=(args.faces, 128))).astype(np.float32)
    store = PostgresStore(url, MODEL)
    PostgresStore(empty_url, MODEL).close()
    assert store.matches_in_database
    started = time.perf_counter()
    load(url, owners, faces)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(f"CREATE INDEX faces_embedding ON faces USING hnsw (embedding vector_l2_ops) "
                     f"WITH (m = {args.m:d}, ef_construction = {args.ef_construction:d})")
        conn.execute("ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('faces'))").fetchone()[0]
    indexed = time.perf_counter() - started
    print(f"{args.faces} faces of {len(np.unique(owners))} people: COPY {loaded:.0f} s, HNSW index (m {args.m}, "
          f"ef_construction {args.ef_construction}) {indexed:.0f} s, "
          f"table with indexes {size}", flush=True)

    known = rng.integers(0, args.faces, size=args.queries // 2)
    queries = np.concatenate([
        centres[owners[known]] + rng.normal(scale=SPREAD, size=(len(known), 128)),
        rng.normal(scale=1 / np.sqrt(128), size=(args.queries - len(known), 128))]).astype(np.float32)
    gallery = Gallery.build([f"person {owner}" for owner in owners], faces)
    exact = nearest_people(gallery, queries, 1)
    del gallery
    for ef_search in args.ef_search:
        postgres._EF_SEARCH = ef_search
        times, found = [], []
        for query in queries:
            start = time.perf_counter()
            found.append(store.nearest(query[None, :], 1, collection="school")[0])
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        recall = sum(a[0].name == b[0].name for a, b in zip(found, exact, strict=True)) / len(queries)
        same = sum(decide(a, 0.6).name == decide(b, 0.6).name for a, b in zip(found, exact, strict=True)) / len(queries)
        print(f"ef_search {ef_search}: nearest of one face p50 {statistics.median(times):.1f} ms, "
              f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms; recall@1 against exact search {recall:.3f}, "
              f"same name or unknown at tolerance 0.6 {same:.3f}", flush=True)
    exact_store = PostgresStore(url, MODEL, exact_search_faces=args.faces)
    times = []
    for query in queries[:50]:
        start = time.perf_counter()
        exact_store.nearest(query[None, :], 1, collection="school")
        times.append((time.perf_counter() - start) * 1000)
    print(f"exact search in PostgreSQL (no index) of one face: p50 {statistics.median(times):.1f} ms", flush=True)
    exact_store.close()
    store.close()
    for label, location in (("empty", empty_url), (f"{args.faces} faces", url)):
        print(f"instance on the {label} schema: PSS master + 2 workers after 50 recognitions "
              f"{instance_pss_mb(location, queries[:50]):.1f} MB", flush=True)


def load(url: str, owners: np.ndarray, faces: np.ndarray) -> None:
    """The faces by COPY into collection "school", the people first; the index is built afterwards."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP INDEX faces_embedding")
        collection = conn.execute("INSERT INTO collections (name) VALUES ('school') RETURNING id").fetchone()[0]
        with conn.cursor().copy("COPY people (id, collection_id, name) FROM STDIN") as copy:
            for owner in np.unique(owners):
                copy.write_row((int(owner) + 1, collection, f"person {owner}"))
        with conn.cursor().copy(
                "COPY faces (id, collection_id, person_id, model, encoding, embedding) FROM STDIN") as copy:
            for index, (owner, face) in enumerate(zip(owners, faces, strict=True)):
                copy.write_row((f"f{index}", collection, int(owner) + 1, MODEL, face.tobytes(), _vector_text(face)))
        conn.execute("SELECT setval(pg_get_serial_sequence('people', 'id'), (SELECT max(id) FROM people))")
        conn.execute("UPDATE collections SET faces = %s WHERE id = %s", (len(faces), collection))  # as writes keep it


def instance_pss_mb(database_url: str, queries: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": "2", "DATABASE_URL": database_url}
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            for query in queries:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                connection.request("POST", "/collections/school/recognize", body=json.dumps(
                    {"encodings": [query.tolist()]}), headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                assert answer.status == 200, answer.read()
                connection.close()
            return pss_mb(all_pids(server))


if __name__ == "__main__":
    main()
