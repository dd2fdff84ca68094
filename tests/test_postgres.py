"""The PostgreSQL store as deployed: several gunicorn instances on one database, and database outages."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
import urllib.parse

import numpy as np
import psycopg

from faceapi.store.postgres import PostgresStore
from tests.conftest import MODEL
from tests.conftest import random_encodings
from tests.conftest import test_images
from tests.scenario import enroll
from tests.scenario import names
from tests.scenario import recognize
from tests.scenario import run_labelled_scenario
from tests.servers import upload
from tests.tcp_proxy import TcpProxy


def test_two_instances_share_one_database(gunicorn_factory, pg_url: str) -> None:
    first = gunicorn_factory("first", DATABASE_URL=pg_url, WEB_CONCURRENCY="2").client()
    second = gunicorn_factory("second", DATABASE_URL=pg_url, WEB_CONCURRENCY="2").client()
    run_labelled_scenario(first)
    assert enroll(first, "biden", "biden.jpg").status_code == 201
    assert names(recognize(second, "examples/two_people.jpg")) == ["biden", "obama"]  # the very next request
    assert second.delete("/people/biden").status_code == 200
    assert names(recognize(first, "examples/two_people.jpg")) == [None, "obama"]

    photos = ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png"]

    def add(index: int) -> int:
        client = (first, second)[index % 2]
        return enroll(client, f"person{index % 3}", photos[index % 4]).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert set(pool.map(add, range(12))) == {201}
    people = {p["name"]: p["face_count"] for p in second.get("/people").json["people"]}
    assert people == {"obama": 1, "person0": 4, "person1": 4, "person2": 4}
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM faces").fetchone() == (13, 13)


def _proxied(pg_url: str, port: int) -> str:
    parts = urllib.parse.urlsplit(pg_url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


def test_database_outage_gives_503_then_recovers(gunicorn_factory, pg_url: str) -> None:
    parts = urllib.parse.urlsplit(pg_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.start()
    try:
        server = gunicorn_factory(DATABASE_URL=_proxied(pg_url, proxy.port), WEB_CONCURRENCY="2")
        client = server.client()
        assert enroll(client, "obama", "obama.jpg").status_code == 201
        workers = server.worker_pids()

        proxy.cut()  # the database is now unreachable
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json["error"]["code"] == "store_unavailable"
        assert str(proxy.port) not in str(ready.json)  # the open /ready names no host or port
        down = client.post("/recognize", data={"image": upload(test_images("obama2.jpg"))})
        assert down.status_code == 503 and down.json["error"]["code"] == "store_unavailable"
        assert client.get("/people").status_code == 503
        time.sleep(12)  # longer than the pool's reconnection backoff: recovery must not depend on it

        proxy.start()  # back, on the same port
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.2)
        for _ in range(6):
            assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]
        assert server.worker_pids() == workers  # recovered without restarting anything
    finally:
        proxy.cut()


def test_killed_connections_are_replaced(gunicorn_factory, pg_url: str, database_url: str) -> None:
    client = gunicorn_factory(DATABASE_URL=pg_url, WEB_CONCURRENCY="2").client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    for _ in range(3):
        with psycopg.connect(database_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'faceapi' AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        statuses = [client.get("/people").status_code for _ in range(4)]
        assert killed >= 1 and set(statuses) <= {200, 503} and statuses[-1] == 200, (killed, statuses)
    assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]


def test_schema_1_upgrades_once_with_two_instances_starting_together(pg_url: str) -> None:
    """A database at schema 1 with faces; two stores open it at once: one migrates, every face stays."""
    from faceapi.store import postgres
    from faceapi.store.postgres import PostgresStore

    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE faceapi_schema (version int NOT NULL)")
            conn.execute(postgres._MIGRATIONS[0])
            conn.execute("INSERT INTO faceapi_schema VALUES (1)")
            person = conn.execute("INSERT INTO people (name) VALUES ('ada') RETURNING id").fetchone()[0]
            conn.execute("INSERT INTO faces (id, person_id, model, encoding) VALUES ('f1', %s, 'm', %s)",
                         (person, bytes(512)))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        stores = list(pool.map(lambda _: PostgresStore(pg_url, "m"), range(2)))
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM faceapi_schema ORDER BY version")]
    assert versions == list(range(1, len(postgres._MIGRATIONS) + 1))
    [face] = stores[1].person_faces("ada")
    assert face.face_id == "f1" and face.external_id is None and face.created_at is not None
    for store in stores:
        store.close()


def test_schema_2_upgrades_to_collections_keeping_every_face(pg_url: str) -> None:
    """A database at schema 2 (built by the real migrations 1 and 2) with two people: migration 3 puts them in
    the default collection, with ids, times and external ids; names are then unique per collection only."""
    import numpy as np

    from faceapi.store import postgres
    from faceapi.store.postgres import PostgresStore

    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE faceapi_schema (version int NOT NULL)")
            for version, migration in enumerate(postgres._MIGRATIONS[:2], start=1):
                conn.execute(migration)
                conn.execute("INSERT INTO faceapi_schema VALUES (%s)", (version,))
            for name, face_ids in (("ada", ("a1", "a2")), ("bob", ("b1",))):
                person = conn.execute("INSERT INTO people (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]
                for index, face_id in enumerate(face_ids):
                    conn.execute("INSERT INTO faces (id, person_id, model, encoding, created_at, external_id) "
                                 "VALUES (%s, %s, 'm', %s, '2026-01-02T03:04:05Z', %s)",
                                 (face_id, person, np.full(128, index, "<f4").tobytes(), f"x/{face_id}"))
            conn.execute("UPDATE gallery_version SET version = 5")
    store = PostgresStore(pg_url, "m")
    assert [(c.name, c.person_count, c.face_count) for c in store.collections()] == [("default", 2, 3)]
    with psycopg.connect(pg_url) as conn:  # migration 4 counted them
        assert conn.execute("SELECT faces FROM collections WHERE name = 'default'").fetchone() == (3,)
    faces = store.person_faces("ada")
    assert [(f.face_id, f.external_id, f.created_at.year) for f in faces] == [("a1", "x/a1", 2026),
                                                                                ("a2", "x/a2", 2026)]
    np.testing.assert_array_equal(faces[1].encoding, np.full(128, 1, "<f4"))
    assert sorted(store.gallery().names) == ["ada", "ada", "bob"]
    # The same name and even the same face id in another collection: a different person, a different face.
    store.import_faces([dataclasses.replace(faces[0], name="ada")], collection="class-2")
    assert store.gallery(collection="class-2").names == ("ada",)
    assert store.remove_person("ada", collection="class-2") == 1
    assert [f.face_id for f in store.person_faces("ada")] == ["a1", "a2"]
    store.close()


def test_faces_of_other_models_count_nowhere(pg_url: str, engine) -> None:
    """A database shared with an older model's deploy: its faces are left out of every answer, and verify says so."""
    import numpy as np

    from faceapi.config import Settings
    from faceapi.store.postgres import PostgresStore
    from tests.conftest import client_of

    older = PostgresStore(pg_url, "an-older-model")
    older.add_faces("ada", np.full((2, 128), 0.05, dtype=np.float64))
    older.add_faces("obama", np.full((1, 128), 0.05, dtype=np.float64))
    older.close()
    client = client_of(Settings(database_url=pg_url, workers=1), engine)
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    people = client.get("/people").json["people"]
    assert people == [{"name": "ada", "face_count": 0}, {"name": "obama", "face_count": 1}]
    assert len(client.get("/people/obama").json["faces"]) == 1 and client.get("/people/ada").json["faces"] == []
    refused = client.post("/verify", data={"name": "ada", "image": upload(test_images("obama2.jpg"))})
    assert refused.status_code == 422 and refused.json["error"]["code"] == "no_enrolled_face", refused.json
    verified = client.post("/verify", data={"name": "obama", "image": upload(test_images("obama2.jpg"))})
    assert verified.status_code == 200 and verified.json["match"] is True


def test_readers_apply_enrollments_and_read_whole_after_other_changes(pg_url: str) -> None:
    """Another process's enrollment is appended to the gallery a reader holds; a removal, a rename or a
    replacing import makes it read the collection whole. Galleries handed out before stay as they were."""
    writer, reader = PostgresStore(pg_url, MODEL), PostgresStore(pg_url, MODEL)
    writer.add_faces("ada", random_encodings(2, 1))
    first = reader.gallery()
    held = reader._galleries["default"]
    writer.add_faces("bob", random_encodings(1, 2))
    writer.add_faces("ada", random_encodings(1, 3))
    second = reader.gallery()
    assert reader._galleries["default"] is held  # applied, not read again
    assert first.names == ("ada", "ada") and sorted(second.names) == ["ada", "ada", "ada", "bob"]
    np.testing.assert_array_equal(second.encodings[second.names.index("bob")], random_encodings(1, 2)[0])
    for change in (lambda: writer.remove_person("bob"), lambda: writer.rename_person("ada", "Ada"),
                   lambda: writer.import_faces(writer.faces()[:1], replace=True)):
        change()
        gallery = reader.gallery()
        assert reader._galleries["default"] is not held
        held = reader._galleries["default"]
        assert sorted(gallery.names) == sorted(face.name for face in writer.faces())
    assert reader.gallery().names == ("Ada",)
    writer.close()
    reader.close()


# What the code before migration 5 sent for each write (a rolling deploy keeps it running beside new readers):
# it set no `faces.added`, and bumped the collection's version without marking a reload.
_OLD_BUMP = "UPDATE collections SET version = version + 1, faces = faces + %s WHERE id = %s"


def _old_code(pg_url: str, statements: list[tuple[str, tuple]]) -> None:
    """Run ``statements`` in one transaction as the old code's connections did (no writer option)."""
    with psycopg.connect(pg_url) as conn, conn.transaction():
        for sql, params in statements:
            conn.execute(sql, params)


def test_old_and_new_instances_agree_during_a_rolling_deploy(pg_url: str) -> None:
    """An enrollment, a removal and a rename made by the old code are seen by a new reader holding a gallery,
    without a restart (issue 28, defect 7)."""
    writer, reader = PostgresStore(pg_url, MODEL), PostgresStore(pg_url, MODEL)
    writer.add_faces("ada", random_encodings(1, 1))
    writer.add_faces("bob", random_encodings(1, 2))
    assert sorted(reader.gallery().names) == ["ada", "bob"]
    with psycopg.connect(pg_url) as conn:
        collection_id = conn.execute("SELECT id FROM collections WHERE name = 'default'").fetchone()[0]
        ada = conn.execute("SELECT id FROM people WHERE name = 'ada'").fetchone()[0]
    encoding = random_encodings(1, 3)[0].astype("<f4").tobytes()
    _old_code(pg_url, [
        ("INSERT INTO faces (id, collection_id, person_id, model, encoding, created_at, external_id) "
         "VALUES (%s, %s, %s, %s, %s, now(), NULL)", ("f" * 32, collection_id, ada, MODEL, encoding)),
        (_OLD_BUMP, (1, collection_id))])
    assert sorted(reader.gallery().names) == ["ada", "ada", "bob"]  # the old instance's enrollment
    _old_code(pg_url, [("DELETE FROM people WHERE name = 'bob'", ()), (_OLD_BUMP, (-1, collection_id))])
    assert sorted(reader.gallery().names) == ["ada", "ada"]  # the person the old instance deleted is gone
    _old_code(pg_url, [("UPDATE people SET name = 'Ada' WHERE id = %s", (ada,)), (_OLD_BUMP, (0, collection_id))])
    assert reader.gallery().names == ("Ada", "Ada")  # and renamed
    held = reader._galleries["default"]
    writer.add_faces("cy", random_encodings(1, 4))  # the new code's own writes are still applied, not read whole
    assert sorted(reader.gallery().names) == ["Ada", "Ada", "cy"] and reader._galleries["default"] is held
    writer.remove_person("cy")
    assert reader.gallery().names == ("Ada", "Ada")
    writer.close()
    reader.close()
