"""A recognition in a class of 40 faces: alone in the store, and beside 100 000 faces of other collections.

Usage: .venv/bin/python bench/collection_scale.py [--others 100000] [--repeats 300]
                                             [--url postgresql://postgres@127.0.0.1:5432/test]

For each store (pickle file; PostgreSQL in throwaway schemas, dropped at the end), two stores are
built: "alone" holds only the class (40 synthetic faces plus obama.jpg's), "beside" the same class and
``--others`` synthetic faces in 10 other collections. Both are served by the real app (Flask's test
client, the models loaded once); each round recognizes in one then the other, so both see the same
machine load. Timed: ``POST /collections/class/recognize`` with obama.jpg's encoding (the match path,
where a gallery's size shows) and with the 480p photo (a whole request); the first recognition of a
fresh app (the class's gallery loaded); and a recognition right after a write in another collection
(made through a second store handle, as another worker would). The pickle store also reports what a
worker holds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from collections.abc import Iterator

import numpy as np
import psycopg
from psycopg import sql

from common import FACES
from faceapi import create_app
from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.store import FaceRecord
from faceapi.store import open_store
from tests.servers import encode_form
from tests.servers import upload

CLASS = "class"
OTHER_COLLECTIONS = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    engine = FaceEngine.load()
    obama = engine_encoding(engine)
    for kind in ("pickle", "postgres"):
        with stores(kind, args.url) as (alone, beside):
            started = time.perf_counter()
            for location, others in ((alone, 0), (beside, args.others)):
                fill(location, engine.model_id, obama, others)
            print(f"\n{kind}: stores filled in {time.perf_counter() - started:.0f} s", flush=True)
            compare(kind, engine, obama, alone, beside, args.repeats)


def engine_encoding(engine: FaceEngine) -> np.ndarray:
    from faceapi.pipeline import Pipeline

    photo = (FACES / "tests/test_images/obama.jpg").read_bytes()
    return Pipeline(engine, Settings(workers=1)).find_one_face(photo).faces[0].encoding


@contextlib.contextmanager
def stores(kind: str, url: str) -> Iterator[tuple[str, str]]:
    """Two empty stores' locations of ``kind``."""
    if kind == "pickle":
        with tempfile.TemporaryDirectory() as directory:
            yield f"{directory}/alone.pkl", f"{directory}/beside.pkl"
        return
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield tuple(f"{url}?options=-csearch_path%3D{schema}" for schema in schemas)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def fill(location: str, model_id: str, obama: np.ndarray, others: int) -> None:
    """The class (obama and 39 made-up people), and ``others`` made-up faces in other collections."""
    rng = np.random.default_rng(7)
    store = open_store(location, model_id)
    classmates = [FaceRecord(uuid.uuid4().hex, f"pupil {i}", row) for i, row in enumerate(_strangers(rng, 39))]
    store.import_faces([FaceRecord(uuid.uuid4().hex, "obama", obama), *classmates], collection=CLASS)
    for index in range(OTHER_COLLECTIONS):
        count = others // OTHER_COLLECTIONS
        records = [FaceRecord(uuid.uuid4().hex, f"person {i // 2}", row)
                   for i, row in enumerate(_strangers(rng, count))]
        if records:
            store.import_faces(records, collection=f"school-{index}")
    store.close()


def _strangers(rng: np.random.Generator, count: int) -> np.ndarray:
    """Made-up encodings at about the spread of real ones (unit-ish norm), far from any real face."""
    return (rng.normal(size=(count, 128)) * 0.09).astype(np.float32)


def _settings(location: str) -> Settings:
    if location.startswith("postgresql://"):
        return Settings(database_url=location, workers=1, log_level="error")
    return Settings(store_path=location, workers=1, log_level="error")


def compare(kind: str, engine: FaceEngine, obama: np.ndarray, alone: str, beside: str, repeats: int) -> None:
    clients = {name: create_app(_settings(location), engine=engine).test_client()
               for name, location in (("alone", alone), ("beside", beside))}
    body = {"encodings": [obama.tolist()]}
    photo = (FACES / "examples/obama-480p.jpg").read_bytes()

    def by_encoding(client) -> Callable[[], None]:
        def call() -> None:
            answer = client.post(f"/collections/{CLASS}/recognize", json=body)
            assert answer.status_code == 200 and answer.json["faces"][0]["name"] == "obama", answer.json
        return call

    def by_photo(client) -> Callable[[], None]:
        def call() -> None:
            data, content_type = encode_form({"image": upload(photo, "obama-480p.jpg")})
            answer = client.post(f"/collections/{CLASS}/recognize", data=data, content_type=content_type)
            assert answer.status_code == 200 and [f["name"] for f in answer.json["faces"]] == ["obama"], answer.json
        return call

    first = {name: _once(by_encoding(create_app(_settings(location), engine=engine).test_client()))
             for name, location in (("alone", alone), ("beside", beside))}
    encodings = _side_by_side({name: by_encoding(client) for name, client in clients.items()}, repeats)
    writers = {name: open_store(location, engine.model_id) for name, location in (("alone", alone), ("beside", beside))}
    newcomer = np.random.default_rng(3).normal(size=(1, 128)).astype(np.float32) * 0.09

    def after_a_write(name: str) -> Callable[[], None]:
        call = by_encoding(clients[name])

        def timed() -> float:
            writers[name].add_faces("newcomer", newcomer, collection="school-0")  # untimed: another worker's write
            return _once(call)
        return timed

    after_write = {name: statistics.median(after_a_write(name)() for _ in range(max(5, repeats // 10)))
                   for name in clients}
    photos = _side_by_side({name: by_photo(client) for name, client in clients.items()}, max(5, repeats // 20))
    print(f"{'':36}{'alone':>10}{'beside':>10}{'ratio':>8}")
    for writer in writers.values():
        writer.close()
    for label, figures in (("first recognition (gallery load)", first), ("recognize, encoding (median)", encodings),
                           ("recognize, 480p photo (median)", photos),
                           ("recognize after a write elsewhere", after_write)):
        ratio = figures["beside"] / figures["alone"]
        print(f"{label:36}{figures['alone']:>8.2f}ms{figures['beside']:>8.2f}ms{ratio:>8.2f}")
    if kind == "pickle":
        for name, location in (("alone", alone), ("beside", beside)):
            tracemalloc.start()
            store = open_store(location, engine.model_id)
            store.gallery(collection=CLASS)
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            store.close()
            print(f"pickle store held by a worker serving the class ({name}): {held / 1e6:.1f} MB; "
                  f"the file: {os.path.getsize(location) / 1e6:.1f} MB")


def _once(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _side_by_side(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median ms of each call, alternating which goes first each round, after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    order = list(calls)
    for round_index in range(repeats):
        for name in order if round_index % 2 == 0 else reversed(order):
            times[name].append(_once(calls[name]))
    return {name: statistics.median(values) for name, values in times.items()}


if __name__ == "__main__":
    main()
