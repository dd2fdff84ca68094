"""Matching in PostgreSQL with pgvector (a real PostgreSQL 18 with pgvector 0.8.5, started by
scripts/ensure-pgvector): the same decisions as the numpy path, no gallery in the process, and the
fallback to the numpy path where the server has no extension."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from faceapi.config import Settings
from faceapi.matching import Gallery
from faceapi.matching import nearest_people
from faceapi.store import FaceRecord
from faceapi.store import StoreError
from faceapi.store.postgres import PostgresStore
from tests.conftest import client_of
from tests.conftest import random_encodings
from tests.scenario import enroll
from tests.scenario import recognize
from tests.scenario import run_labelled_scenario

PHOTOS = ("examples/two_people.jpg", "tests/test_images/obama2.jpg", "tests/test_images/obama3.jpg",
          "tests/test_images/32bit.png", "examples/lin-manuel-miranda.png", "examples/obama-1080p.jpg",
          "examples/knn_examples/test/obama_and_biden.jpg", "examples/alex-lacamoire.png")


def test_the_labelled_scenario_matches_in_the_database(pgvector_url: str, engine) -> None:
    client = client_of(Settings(database_url=pgvector_url, workers=1), engine)
    run_labelled_scenario(client)
    store = client.application.extensions["faceapi"].store
    assert store.matches_in_database and store._galleries == {}  # no gallery held by the process


def test_same_decisions_and_distances_as_the_numpy_path(pgvector_url: str, tmp_path, engine) -> None:
    clients = {"numpy": client_of(Settings(store_path=str(tmp_path / "faces.pkl"), workers=1), engine),
               "pgvector": client_of(Settings(database_url=pgvector_url, workers=1), engine)}
    for client in clients.values():
        for name, photos in (("obama", ("obama.jpg", "obama2.jpg")), ("biden", ("biden.jpg",)),
                             ("alex", ("../../examples/alex-lacamoire.png",))):
            assert enroll(client, name, *photos).status_code == 201
    for photo in PHOTOS:
        answers = {kind: recognize(client, photo, top_k="3").json["faces"] for kind, client in clients.items()}
        assert answers["pgvector"] == answers["numpy"], photo


def test_faces_stored_before_pgvector_get_embeddings(pgvector_url: str) -> None:
    before = PostgresStore(pgvector_url, "m", pgvector="off")
    assert not before.matches_in_database
    encodings = random_encodings(30, 1)
    for index in range(10):
        before.add_faces(f"p{index}", encodings[index * 3:index * 3 + 3], collection="c")
    before.close()
    store = PostgresStore(pgvector_url, "m")
    assert store.matches_in_database
    store.add_faces("late", random_encodings(1, 2), collection="c")
    queries = random_encodings(4, 3)
    gallery = store.gallery(collection="c")
    expected = nearest_people(gallery, queries, 5)
    assert store.nearest(queries, 5, collection="c") == expected
    assert store.nearest(queries, 1, collection="elsewhere") == [[] for _ in queries]
    store.close()


def test_auto_falls_back_where_the_server_has_no_pgvector_and_on_refuses(pg_url: str) -> None:
    with pytest.raises(StoreError, match="FACEAPI_PGVECTOR=on, but the database offers no vector extension"):
        PostgresStore(pg_url, "m", pgvector="on")
    store = PostgresStore(pg_url, "m")
    assert not store.matches_in_database
    store.add_faces("ada", random_encodings(2, 1))
    query = random_encodings(1, 1)
    assert store.nearest(query, 1) == nearest_people(Gallery.build(["ada"] * 2, random_encodings(2, 1)), query, 1)
    store.close()


def test_a_collection_up_to_the_threshold_is_searched_exactly(pgvector_url: str) -> None:
    """Exact below `EXACT_SEARCH_FACES` (here 100), by the face counts every write keeps: the same candidates
    as numpy's exact search; above it, the index."""
    store = PostgresStore(pgvector_url, "m", exact_search_faces=100)
    store.import_faces([FaceRecord(f"f{i}", f"p{i // 3}", row) for i, row in enumerate(random_encodings(99, 1))],
                       collection="c")
    store.add_faces("late", random_encodings(1, 2), collection="c")
    store.remove_face("p0", "f0", collection="c")
    store.remove_person("p1", collection="c")
    store.import_faces([FaceRecord("x", "y", random_encodings(1, 3)[0])], collection="d", replace=True)
    with psycopg.connect(pgvector_url) as conn:
        counts = dict(conn.execute("SELECT name, faces FROM collections WHERE faces > 0").fetchall())
        real = dict(conn.execute("SELECT c.name, count(f.id) FROM collections c JOIN faces f "
                                 "ON f.collection_id = c.id GROUP BY c.name").fetchall())
    assert counts == real == {"c": 96, "d": 1}
    queries = random_encodings(20, 4)
    assert store.nearest(queries, 3, collection="c") == nearest_people(store.gallery(collection="c"), queries, 3)
    store.close()


def test_a_large_collection_is_searched_through_the_index(pgvector_url: str) -> None:
    """With most of the table in one collection, the planner takes the HNSW index; its answers name the
    enrolled face a query is a slightly moved copy of, for nearly every query (the index is approximate, and
    made-up Gaussian encodings are its hardest case: real ones cluster; bench/pgvector_scale.py measures
    the recall on a million)."""
    store = PostgresStore(pgvector_url, "m", exact_search_faces=1000)
    encodings = random_encodings(3000, 5) * 0.1

    records = [FaceRecord(f"f{i}", f"person {i}", row) for i, row in enumerate(encodings)]
    store.import_faces(records, collection="big")
    store.add_faces("small", random_encodings(2, 6), collection="small")
    with psycopg.connect(pgvector_url) as conn:
        conn.execute("ANALYZE faces")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN SELECT id FROM faces WHERE collection_id = (SELECT id FROM collections WHERE name = 'big') "
            "ORDER BY embedding <-> (SELECT embedding FROM faces LIMIT 1) LIMIT 4").fetchall())
    assert "faces_embedding" in plan, plan
    queries = encodings[:50] + np.float32(0.001)
    found = store.nearest(queries, 1, collection="big")
    hits = sum(candidates[0].name == f"person {i}" for i, candidates in enumerate(found))
    assert hits >= 45, hits
    store.close()


@pytest.mark.parametrize("exact_search_faces", [10_000, 10], ids=["exact", "index"])
def test_top_k_gives_k_people_when_one_owns_the_nearest_faces(pgvector_url: str, exact_search_faces: int) -> None:
    """A person with many faces near the query does not squeeze the others out (issue 28, defect 8)."""
    store = PostgresStore(pgvector_url, "m", exact_search_faces=exact_search_faces)
    query = random_encodings(1, 7)[0]
    crowd = query + random_encodings(12, 8) * 0.01  # 12 faces of one person, all nearer than anyone else
    store.add_faces("crowd", crowd)
    store.add_faces("other", (query + random_encodings(1, 9) * 0.05))
    store.add_faces("far", random_encodings(5, 10))
    found = store.nearest(query[None, :], 2)[0]
    assert [candidate.name for candidate in found] == ["crowd", "other"]
    assert found == nearest_people(store.gallery(), query[None, :], 2)[0]  # as the numpy path finds them
    store.close()
