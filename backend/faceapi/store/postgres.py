"""The shared store: PostgreSQL through psycopg 3 and a bounded connection pool.

- Schema changes are numbered migrations, applied at start-up under an advisory
  lock, so any number of instances may start at once and a later change is a new
  entry in `_MIGRATIONS`, not a manual step.
- Every enroll and delete is one transaction that also bumps its collection's
  version counter. A recognition reads only that counter (one indexed row); the
  collection's gallery matrix is loaded on a process's first request for it and
  brought up to date only when the counter moved, so every worker of every instance
  sees every change on its next request, and a write in one collection costs the
  others nothing. Enrollments are applied to the held gallery (the faces added
  since, by the version each face carries); a removal, a rename or a replace makes
  readers read the collection whole.
- With the pgvector extension (``FACEAPI_PGVECTOR``), faces also carry their encoding as a
  ``vector(128)`` under an HNSW index, and `PostgresStore.nearest` runs in the database:
  the process holds no gallery. The planner searches a small collection exactly (its rows by
  the primary key, then sorted) and a large one through the index; distances are recomputed
  exactly from the stored float32 bytes, as the numpy path computes them.
- Connections are not process-safe: the pool is created in each worker, after
  fork, on first use (`open=False` spelled out); start-up checks in the master use
  a one-off connection. A dropped connection is replaced by the pool's check; a
  database that is down gives `StoreUnavailable` (503) until it is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from psycopg_pool import PoolTimeout

from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import STORED_DTYPE
from faceapi.matching import Candidate
from faceapi.matching import Gallery
from faceapi.matching import grown
from faceapi.matching import nearest_people
from faceapi.matching import squared_norms
from faceapi.matching import stored_matrix
from faceapi.memory import release_free_memory
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import CollectionSummary
from faceapi.store import Enrollment
from faceapi.store import FaceRecord
from faceapi.store import NameTaken
from faceapi.store import PersonSummary
from faceapi.store import StoreError
from faceapi.store import StoreUnavailable
from faceapi.store import UnknownCollection
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson
from faceapi.store import new_face_id
from faceapi.store import utc_now

log = logging.getLogger(__name__)

# Seconds a request waits for a connection before answering 503.
_CONNECT_TIMEOUT_S = 5
_RECONNECT_BACKOFF_S = 10

_MIGRATIONS = [
    # 1: people, their faces (with the model that made each encoding), the change counter.
    """
    CREATE TABLE people (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE faces (
        id text PRIMARY KEY,
        person_id bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        model text NOT NULL,
        encoding bytea NOT NULL CHECK (length(encoding) = 512),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX faces_person_id ON faces (person_id);
    CREATE TABLE gallery_version (
        id int PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO gallery_version VALUES (1, 0);
    """,
    # 2: the client's own reference for a face, given at enrollment.
    "ALTER TABLE faces ADD COLUMN external_id text;",
    # 3: collections, each with its own change counter; every face so far goes to the default one.
    # Names and face ids become unique per collection; faces carry it too, so a gallery is one index range.
    """
    CREATE TABLE collections (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        version bigint NOT NULL DEFAULT 0
    );
    INSERT INTO collections (name) VALUES ('default');
    ALTER TABLE people ADD COLUMN collection_id bigint REFERENCES collections (id) ON DELETE CASCADE;
    UPDATE people SET collection_id = (SELECT id FROM collections WHERE name = 'default');
    ALTER TABLE people ALTER COLUMN collection_id SET NOT NULL;
    ALTER TABLE people DROP CONSTRAINT people_name_key;
    ALTER TABLE people ADD CONSTRAINT people_collection_name_key UNIQUE (collection_id, name);
    ALTER TABLE faces ADD COLUMN collection_id bigint;
    UPDATE faces f SET collection_id = p.collection_id FROM people p WHERE p.id = f.person_id;
    ALTER TABLE faces ALTER COLUMN collection_id SET NOT NULL;
    ALTER TABLE faces DROP CONSTRAINT faces_pkey;
    ALTER TABLE faces ADD PRIMARY KEY (collection_id, id);
    DROP TABLE gallery_version;
    """,
    # 4: each collection's face count, kept by every write: it decides between exact and indexed search.
    """
    ALTER TABLE collections ADD COLUMN faces bigint NOT NULL DEFAULT 0;
    UPDATE collections c SET faces = (SELECT count(*) FROM faces f WHERE f.collection_id = c.id);
    """,
    # 5: what a reader may apply to the gallery it holds: each face carries the collection version that added
    # it, and a collection the last version that a reader must read whole (a removal, a rename, a replace).
    # Constant defaults: no table rewrite, whatever the size.
    """
    ALTER TABLE faces ADD COLUMN added bigint NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN reloaded bigint NOT NULL DEFAULT 0;
    CREATE INDEX faces_added ON faces (collection_id, added);
    """,
    # 6: a rolling deploy keeps instances of the code before migration 5 writing beside new readers. Their
    # inserts set no `added`, and their removals and renames mark no `reloaded`; so the database does it for
    # any writer that does not say it keeps both (`_WRITER_OPTION`): an insert is added by the version the
    # writer is about to commit (the collection row locked first, as `_next_version` does), and a removal, a
    # rename or a move of faces makes readers read the collection whole.
    """
    CREATE FUNCTION faceapi_add_by_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT version + 1 INTO NEW.added FROM collections WHERE id = NEW.collection_id FOR UPDATE;
        RETURN NEW;
    END $$;
    CREATE FUNCTION faceapi_read_whole() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE collections SET reloaded = GREATEST(reloaded, version + 1) WHERE id = OLD.collection_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER faces_added_by_unversioned_writer BEFORE INSERT ON faces FOR EACH ROW
        WHEN (NEW.added = 0) EXECUTE FUNCTION faceapi_add_by_version();
    CREATE TRIGGER faces_changed_by_unversioned_writer AFTER DELETE OR UPDATE OF person_id ON faces FOR EACH ROW
        WHEN (current_setting('faceapi.writer', true) IS DISTINCT FROM 'versioned')
        EXECUTE FUNCTION faceapi_read_whole();
    CREATE TRIGGER people_renamed_by_unversioned_writer AFTER UPDATE OF name ON people FOR EACH ROW
        WHEN (current_setting('faceapi.writer', true) IS DISTINCT FROM 'versioned')
        EXECUTE FUNCTION faceapi_read_whole();
    """,
]
# Every connection of this code says it keeps `faces.added` and `collections.reloaded` itself (migration 6).
_WRITER_OPTION = "-c faceapi.writer=versioned"
_MIGRATION_LOCK = 7_431_902_155  # pg_advisory_xact_lock key: one migrator at a time
PGVECTOR_MODES = ("auto", "on", "off")
# HNSW's candidate list per search (pgvector's default is 40): larger is closer to exact, and slower.
# Measured at a million faces (bench/pgvector_scale.py, docs/BENCHMARKS.md): 400 keeps one face's search
# under 50 ms (p50 43 ms) with the best recall that allows (0.75 on HNSW's hardest data, against 0.50 at 100).
_EF_SEARCH = 400
# The HNSW graph of a new index: pgvector's defaults (an index made before, or by an administrator, is kept).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# Faces fetched per query to find `count` distinct people (a person may own several of the nearest).
_FACES_PER_PERSON = 4
# Up to this many faces in a collection, a search is exact: measured (bench/pgvector_scale.py), an exact
# search of 20 000 faces takes about as long as an indexed one of a million, and is never wrong.
EXACT_SEARCH_FACES = 20_000
_ANALYZE_AFTER_FACES = 10_000
# pgvector: up to this many faces, a collection's people are counted again after each write (a few ms); above,
# the count is scaled by the faces count, and counted again after a tenth more or fewer faces or 5 minutes
# (counting a million faces' people takes about a second; an open-set decision reads the count in log scale).
_RECOUNT_PEOPLE_FACES = 5_000
_RECOUNT_PEOPLE_DRIFT = 0.1
_RECOUNT_PEOPLE_S = 300.0
_GALLERY_BATCH = 10_000  # rows a gallery read holds at once
# The nearest faces of each query, within one collection: `ORDER BY distance + 0` can use no vector index,
# so PostgreSQL reads the collection's rows by the primary key and sorts them (exact); plain `ORDER BY
# distance` is served by the HNSW index (approximate).
_NEAREST = """
    SELECT q.i, p.name, f.encoding
    FROM unnest(%(queries)s::vector[]) WITH ORDINALITY AS q(v, i)
    CROSS JOIN LATERAL (
        SELECT person_id, encoding FROM faces
        WHERE collection_id = %(collection_id)s AND model = %(model)s
        ORDER BY {order} LIMIT %(window)s) f
    JOIN people p ON p.id = f.person_id
"""
_EXACT_NEAREST = _NEAREST.format(order="(embedding <-> q.v) + 0")
_INDEXED_NEAREST = _NEAREST.format(order="embedding <-> q.v")


class PostgresStore:
    """The `faceapi.store.Store` on a PostgreSQL database."""

    def __init__(self, dsn: str, model_id: str, pool_size: int = 4,
                 on_reload: Callable[[], None] = lambda: None, pgvector: str = "auto",
                 exact_search_faces: int = EXACT_SEARCH_FACES) -> None:
        """Connect once to migrate the schema; the pool opens later, in the process that uses it.

        :param pool_size: connections per process; one per request thread is enough.
        :param on_reload: called whenever the gallery is read afresh (see `faceapi.store.open_store`).
        :param pgvector: ``auto`` matches in the database when it offers the vector extension, ``on``
            requires it, ``off`` never uses it (see `enable_vector`).
        :param exact_search_faces: with pgvector, collections up to this size are searched exactly, larger
            ones through the HNSW index.
        :raises StoreUnavailable: the database cannot be reached.
        :raises StoreError: ``pgvector="on"`` and the extension cannot be used.
        """
        self._dsn = dsn
        self._model_id = model_id
        self._on_reload = on_reload
        self._pool_size = pool_size
        self._exact_search_faces = exact_search_faces
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        # collection name -> its gallery as this process holds it, for the collections asked for.
        self._galleries: dict[str, _HeldGallery] = {}
        self._people_counts: dict[str, _PeopleCount] = {}
        self._gallery_lock = threading.Lock()
        with _unavailable_on_error(), psycopg.connect(dsn, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            migrate(conn)
            self.matches_in_database = enable_vector(conn, pgvector)

    def add_faces(self, name: str, encodings: np.ndarray, external_ids: Sequence[str | None] | None = None,
                  *, collection: str = DEFAULT_COLLECTION) -> Enrollment:
        matrix = np.asarray(encodings, dtype=STORED_DTYPE).reshape(-1, ENCODING_WIDTH)
        created = utc_now()
        records = [FaceRecord(new_face_id(), name, row, created, external_id)
                   for row, external_id in zip(matrix, external_ids or [None] * len(matrix), strict=True)]
        with self._transaction() as cur:
            collection_id = _collection_id(cur, collection)
            version = _next_version(cur, collection_id)
            person_id = _person_id(cur, collection_id, name)
            added = self._insert(cur, collection_id, version, [(person_id, record) for record in records])
            _count_faces(cur, collection_id, added)
            count = _face_count(cur, person_id)
        return Enrollment(name, tuple(record.face_id for record in records), count)

    def remove_person(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        with self._transaction() as cur:
            row = cur.execute(
                "WITH gone AS (DELETE FROM people WHERE name = %s AND collection_id = "
                "(SELECT id FROM collections WHERE name = %s) RETURNING id, collection_id) "
                "SELECT gone.collection_id, count(f.id) FROM gone LEFT JOIN faces f ON f.person_id = gone.id "
                "GROUP BY gone.id, gone.collection_id",
                (name, collection),
            ).fetchone()
            if row is None:
                raise UnknownPerson(name)
            _next_version(cur, row[0], whole=True)
            _count_faces(cur, row[0], -row[1])
        return row[1]

    def remove_face(self, name: str, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        with self._transaction() as cur:
            collection_id, person_id = _existing_person(cur, collection, name)
            if cur.execute("DELETE FROM faces WHERE collection_id = %s AND id = %s AND person_id = %s",
                           (collection_id, face_id, person_id)).rowcount == 0:
                raise UnknownFace(face_id)
            left = _face_count(cur, person_id)
            if left == 0:
                cur.execute("DELETE FROM people WHERE id = %s", (person_id,))
            _next_version(cur, collection_id, whole=True)
            _count_faces(cur, collection_id, -1)
        return left

    def rename_person(self, name: str, new_name: str, *, merge: bool = False,
                      collection: str = DEFAULT_COLLECTION) -> int:
        with self._transaction() as cur:
            collection_id, person_id = _existing_person(cur, collection, name)
            if new_name != name:
                row = cur.execute("SELECT id FROM people WHERE collection_id = %s AND name = %s FOR UPDATE",
                                  (collection_id, new_name)).fetchone()
                if row is None:
                    cur.execute("UPDATE people SET name = %s WHERE id = %s", (new_name, person_id))
                elif not merge:
                    raise NameTaken(new_name)
                else:
                    cur.execute("UPDATE faces SET person_id = %s WHERE person_id = %s", (row[0], person_id))
                    cur.execute("DELETE FROM people WHERE id = %s", (person_id,))
                    person_id = row[0]
                _next_version(cur, collection_id, whole=True)
            return _face_count(cur, person_id)

    def people(self, limit: int | None = None, after: str | None = None, *,
               collection: str = DEFAULT_COLLECTION) -> list[PersonSummary]:
        # COLLATE "C" orders by code point, as Python does, whatever the database's collation.
        with self._transaction() as cur:
            rows = cur.execute(
                # Only this model's faces count, as in person_faces and gallery.
                "SELECT p.name, count(f.id) FROM people p JOIN collections c ON c.id = p.collection_id "
                "LEFT JOIN faces f ON f.person_id = p.id AND f.model = %(model)s "
                'WHERE c.name = %(collection)s AND (%(after)s::text IS NULL OR p.name COLLATE "C" > %(after)s) '
                'GROUP BY p.name ORDER BY p.name COLLATE "C" LIMIT %(limit)s',
                {"after": after, "limit": limit, "model": self._model_id, "collection": collection},
            ).fetchall()
        return [PersonSummary(name, count) for name, count in rows]

    def person_faces(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        with self._transaction() as cur:
            _collection_id, person_id = _existing_person(cur, collection, name)
            rows = cur.execute(_FACE_ROWS + " WHERE f.person_id = %s AND f.model = %s ORDER BY f.created_at, f.id",
                               (person_id, self._model_id)).fetchall()
        return [_record(row) for row in rows]

    def gallery(self, *, collection: str = DEFAULT_COLLECTION) -> Gallery:
        with self._transaction() as cur:
            row = cur.execute("SELECT id, version, reloaded FROM collections WHERE name = %s",
                              (collection,)).fetchone()
            if row is None:
                return Gallery.empty()
            collection_id, version, reloaded = row
            held = self._galleries.get(collection)
            if held is not None and (held.collection_id, held.version) == (collection_id, version):
                return held.gallery
            with self._gallery_lock:  # one thread brings a collection up to date; the others wait for it
                held = self._galleries.get(collection)
                whole = held is None or held.collection_id != collection_id or held.version < reloaded
                if whole:
                    held = _HeldGallery(collection_id)
                if held.version < version:
                    _read_faces(cur, held, self._model_id, version)
                    self._galleries[collection] = held
                    self._on_reload()
                gallery = held.gallery
        if whole:
            release_free_memory()  # the rows' buffers, returned rather than kept in the heap
        return gallery

    def nearest(self, encodings: np.ndarray, count: int, *,
                collection: str = DEFAULT_COLLECTION) -> list[list[Candidate]]:
        if not self.matches_in_database:
            return nearest_people(self.gallery(collection=collection), encodings, count)
        queries = np.asarray(encodings, dtype=np.float64).reshape(-1, ENCODING_WIDTH)
        if len(queries) == 0:
            return []
        found: list[dict[str, Candidate]] = [{} for _ in queries]
        with self._transaction() as cur:
            row = cur.execute("SELECT id, faces FROM collections WHERE name = %s", (collection,)).fetchone()
            if row is None:
                return [[] for _ in queries]
            collection_id, faces = row
            exact = faces <= self._exact_search_faces
            if not exact:
                # Iterative scans keep searching when other collections' faces fill the first candidates.
                cur.execute(f"SET LOCAL hnsw.ef_search = {_EF_SEARCH:d}; "
                            "SET LOCAL hnsw.iterative_scan = relaxed_order")
            window, asked = count * _FACES_PER_PERSON, list(range(len(queries)))
            while asked:
                rows = cur.execute(_EXACT_NEAREST if exact else _INDEXED_NEAREST, {
                    "queries": [_vector_text(queries[i]) for i in asked], "collection_id": collection_id,
                    "model": self._model_id, "window": window}).fetchall()
                fetched = dict.fromkeys(asked, 0)
                for index, name, blob in rows:
                    query = asked[index - 1]
                    encoding = stored_matrix(blob)[0]
                    distance = float(np.linalg.norm(encoding.astype(np.float64) - queries[query]))
                    best = found[query]
                    if name not in best or distance < best[name].distance:
                        best[name] = Candidate(name, distance, encoding)
                    fetched[query] += 1
                # A person may own many of the nearest faces: ask again, wider, until `count` people or every face.
                asked = [query for query in asked if len(found[query]) < count and fetched[query] == window < faces]
                window *= 4
        return [sorted(best.values(), key=lambda candidate: candidate.distance)[:count] for best in found]

    def people_count(self, *, collection: str = DEFAULT_COLLECTION) -> int:
        if not self.matches_in_database:
            return self.gallery(collection=collection).people_count
        with self._transaction() as cur:
            row = cur.execute("SELECT id, version, faces FROM collections WHERE name = %s", (collection,)).fetchone()
            if row is None:
                return 0
            collection_id, version, faces = row
            held = self._people_counts.get(collection)
            if held is not None and held.collection_id == collection_id:
                if held.version == version:
                    return held.people
                if held.close_enough(faces):
                    return max(1, round(held.people * faces / held.faces))
            people = cur.execute("SELECT count(DISTINCT person_id) FROM faces WHERE collection_id = %s AND model = %s",
                                 (collection_id, self._model_id)).fetchone()[0]
        self._people_counts[collection] = _PeopleCount(collection_id, version, faces, people, time.monotonic())
        return people

    def faces(self, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        with self._transaction() as cur:
            rows = cur.execute(
                _FACE_ROWS + " JOIN collections c ON c.id = f.collection_id WHERE c.name = %s AND f.model = %s "
                'ORDER BY p.name COLLATE "C", f.created_at, f.id', (collection, self._model_id)).fetchall()
        return [_record(row) for row in rows]

    def import_faces(self, records: list[FaceRecord], *, replace: bool = False,
                     collection: str = DEFAULT_COLLECTION) -> int:
        with self._transaction() as cur:
            collection_id = _collection_id(cur, collection)
            version = _next_version(cur, collection_id, whole=replace)
            if replace:
                cur.execute("DELETE FROM people WHERE collection_id = %s", (collection_id,))
            person_ids = {name: _person_id(cur, collection_id, name) for name in dict.fromkeys(r.name for r in records)}
            # One statement for the whole file: the rows go in one batch.
            added = self._insert(cur, collection_id, version,
                                 [(person_ids[record.name], record) for record in records])
            _count_faces(cur, collection_id, added, counted=replace)
            if added >= _ANALYZE_AFTER_FACES:
                # Fresh statistics now, not at autovacuum's next pass: they choose the index for a large collection.
                cur.execute("ANALYZE faces")
        return added

    def collections(self) -> list[CollectionSummary]:
        with self._transaction() as cur:
            rows = cur.execute(
                "SELECT c.name, count(DISTINCT p.id), count(f.id) FROM collections c "
                "JOIN people p ON p.collection_id = c.id "
                "LEFT JOIN faces f ON f.person_id = p.id AND f.model = %s "
                'GROUP BY c.name ORDER BY c.name COLLATE "C"', (self._model_id,)).fetchall()
        return [CollectionSummary(*row) for row in rows]

    def remove_collection(self, collection: str) -> int:
        with self._transaction() as cur:
            row = cur.execute("SELECT id FROM collections WHERE name = %s FOR UPDATE", (collection,)).fetchone()
            people, faces = (0, 0) if row is None else cur.execute(
                "SELECT (SELECT count(*) FROM people WHERE collection_id = %(id)s), "
                "(SELECT count(*) FROM faces WHERE collection_id = %(id)s AND model = %(model)s)",
                {"id": row[0], "model": self._model_id}).fetchone()
            if people == 0:
                raise UnknownCollection(collection)
            # The row goes with its people and faces; a later enrollment makes a new one, whose new id
            # tells every process's cache that this gallery is not that one.
            cur.execute("DELETE FROM collections WHERE id = %s", (row[0],))
        return faces

    def _insert(self, cur: psycopg.Cursor, collection_id: int, version: int,
                faces: list[tuple[int, FaceRecord]]) -> int:
        """Insert each (person id, record) of ``faces`` as added by ``version``, skipping ids already in the
        collection; how many were new. One ``executemany``: psycopg sends the rows in a pipeline, not one
        round trip each."""
        vector = self.matches_in_database
        rows = [(record.face_id, collection_id, person_id, self._model_id,
                 np.asarray(record.encoding, dtype=STORED_DTYPE).tobytes(), record.created_at, record.external_id,
                 version, *((_vector_text(record.encoding),) if vector else ())) for person_id, record in faces]
        cur.executemany(
            "INSERT INTO faces (id, collection_id, person_id, model, encoding, created_at, external_id, added"
            + (", embedding" if vector else "") + ") VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s"
            + (", %s::vector" if vector else "") + ") ON CONFLICT (collection_id, id) DO NOTHING", rows)
        return cur.rowcount

    def check(self) -> None:
        with self._transaction() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """One pooled connection, one transaction: committed on success, rolled back on error."""
        with _unavailable_on_error(), self._connection_pool().connection(timeout=_CONNECT_TIMEOUT_S) as conn:
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    def _connection_pool(self) -> ConnectionPool:
        """This process's pool, created on first use so that no connection crosses a fork."""
        pid = os.getpid()
        if self._pool is not None and self._pool_pid == pid:
            return self._pool
        with self._pool_lock:
            if self._pool is None or self._pool_pid != pid:
                self._pool = ConnectionPool(
                    self._dsn,
                    min_size=1,
                    max_size=self._pool_size,
                    open=False,
                    check=ConnectionPool.check_connection,
                    kwargs={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "faceapi",
                            "options": _with_writer_option(self._dsn)},
                    # The pool's background reconnection backs off exponentially for this long; after it
                    # gives up, each request that finds no connection starts a fresh attempt at once, so
                    # the service is back within a request of the database coming back.
                    reconnect_timeout=_RECONNECT_BACKOFF_S,
                    name="faceapi",
                )
                self._pool.open(wait=False)
                self._pool_pid = pid
                self._galleries = {}
            return self._pool


def migrate(conn: psycopg.Connection) -> int:
    """Bring the schema to the newest version; safe to run from many instances at once. Returns it."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS faceapi_schema (version int NOT NULL)")
        row = conn.execute("SELECT max(version) FROM faceapi_schema").fetchone()
        current = row[0] or 0
        for version, sql in enumerate(_MIGRATIONS[current:], start=current + 1):
            conn.execute(sql)
            conn.execute("INSERT INTO faceapi_schema (version) VALUES (%s)", (version,))
    return len(_MIGRATIONS)


def enable_vector(conn: psycopg.Connection, mode: str) -> bool:
    """Prepare matching in the database, as ``mode`` (`PGVECTOR_MODES`) asks; whether it is on.

    ``auto`` and ``on`` create the vector extension if the server offers it, add each face's
    ``embedding`` with its HNSW index, and fill it for faces stored without one (once, under the
    migration lock). ``auto`` falls back to the gallery in the process when the server has no
    extension, or refuses to create it; ``on`` raises `StoreError` then.
    """
    if mode == "off":
        return False
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
        return _without_vector(mode, "the database offers no vector extension (pgvector)")
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("ALTER TABLE faces ADD COLUMN IF NOT EXISTS embedding vector(128)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS faces_embedding ON faces USING hnsw (embedding vector_l2_ops) "
                         f"WITH (m = {HNSW_M:d}, ef_construction = {HNSW_EF_CONSTRUCTION:d})")
            _fill_embeddings(conn)
    except psycopg.errors.InsufficientPrivilege as exc:
        return _without_vector(mode, f"the database refused the vector extension: {_first_line(exc)}")
    return True


def _without_vector(mode: str, reason: str) -> bool:
    if mode == "on":
        raise StoreError(f"FACEAPI_PGVECTOR=on, but {reason}")
    log.info("matching in this process, not in the database: %s", reason)
    return False


def _fill_embeddings(conn: psycopg.Connection, batch: int = 5000) -> None:
    """Give every face stored without an embedding (before pgvector, or while it was off) its own."""
    while rows := conn.execute("SELECT collection_id, id, encoding FROM faces WHERE embedding IS NULL LIMIT %s",
                               (batch,)).fetchall():
        with conn.cursor() as cur:
            cur.executemany("UPDATE faces SET embedding = %s::vector WHERE collection_id = %s AND id = %s",
                            [(_vector_text(stored_matrix(blob)[0]), collection_id, face_id)
                             for collection_id, face_id, blob in rows])


@dataclasses.dataclass(frozen=True)
class _PeopleCount:
    """A collection's people as counted at one version (pgvector: the process holds no gallery to count)."""

    collection_id: int
    version: int
    faces: int
    people: int
    counted_at: float

    def close_enough(self, faces: int) -> bool:
        """Whether scaling this count by ``faces`` will do (`_RECOUNT_PEOPLE_FACES`)."""
        return (faces > _RECOUNT_PEOPLE_FACES and abs(faces - self.faces) <= _RECOUNT_PEOPLE_DRIFT * self.faces
                and time.monotonic() - self.counted_at < _RECOUNT_PEOPLE_S)


class _HeldGallery:
    """A collection's gallery as a process holds it, at a version, taking faces added since in place: the
    matrix has room to grow, and each `gallery` is a view of the rows so far (an older one is unaffected
    by later rows)."""

    def __init__(self, collection_id: int) -> None:
        self.collection_id = collection_id
        self.version = -1  # nothing read yet (faces stored before versions were kept carry 0)
        self.size = 0
        self.matrix = np.empty((0, ENCODING_WIDTH), dtype=np.float32)
        self.labels = np.empty(0, dtype=np.int32)
        self.norms = np.empty(0, dtype=np.float64)
        self.people: list[str] = []  # label -> name, only ever appended to
        self.label_of: dict[str, int] = {}
        self.gallery = Gallery.empty()

    def append(self, names: list[str], encodings: np.ndarray) -> None:
        end = self.size + len(names)
        self.matrix, self.labels, self.norms = (grown(array, end) for array in (self.matrix, self.labels, self.norms))
        self.matrix[self.size:end] = encodings
        self.norms[self.size:end] = squared_norms(self.matrix[self.size:end])
        for offset, name in enumerate(names, self.size):
            label = self.label_of.get(name)
            if label is None:
                label = self.label_of[name] = len(self.people)
                self.people.append(name)
            self.labels[offset] = label
        self.size = end

    def close_at(self, version: int) -> None:
        """The rows so far are the collection at ``version``."""
        self.gallery = Gallery(self.matrix[:self.size], self.norms[:self.size], self.labels[:self.size],
                               self.people, self.size)
        self.version = version


def _read_faces(cur: psycopg.Cursor, held: _HeldGallery, model_id: str, version: int) -> None:
    """Bring ``held`` to ``version``: append the collection's faces added after its version, up to that one.
    The rows are streamed through a server-side cursor in batches, so a process never holds them all as
    Python objects (a large collection's first read would fragment the heap)."""
    with cur.connection.cursor(name="faceapi_gallery") as rows:
        rows.execute("SELECT p.name, f.encoding FROM faces f JOIN people p ON p.id = f.person_id "
                     "WHERE f.collection_id = %s AND f.model = %s AND f.added > %s AND f.added <= %s",
                     (held.collection_id, model_id, held.version, version))
        while batch := rows.fetchmany(_GALLERY_BATCH):
            held.append([name for name, _ in batch], stored_matrix(b"".join(blob for _, blob in batch)))
    held.close_at(version)


def _with_writer_option(dsn: str) -> str:
    """The connection's ``options``: the DSN's own, if any, and `_WRITER_OPTION`."""
    given = conninfo_to_dict(dsn).get("options")
    return f"{given} {_WRITER_OPTION}" if given else _WRITER_OPTION


def _vector_text(encoding: np.ndarray) -> str:
    """pgvector's text form of an encoding; each float32 value written exactly."""
    values = np.asarray(encoding, dtype=STORED_DTYPE).astype(np.float64).tolist()
    return "[" + ",".join(map(repr, values)) + "]"


@contextlib.contextmanager
def _unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise StoreUnavailable(f"the database is unreachable: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"the database refused the operation: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _collection_id(cur: psycopg.Cursor, name: str) -> int:
    """The collection's id, creating the row if needed; concurrent creators of one name get the same row."""
    return cur.execute(
        "INSERT INTO collections (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
        "RETURNING id", (name,)).fetchone()[0]


def _person_id(cur: psycopg.Cursor, collection_id: int, name: str) -> int:
    """The person's id, creating the row if needed; concurrent creators of one name get the same row."""
    return cur.execute(
        "INSERT INTO people (collection_id, name) VALUES (%s, %s) "
        "ON CONFLICT (collection_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (collection_id, name),
    ).fetchone()[0]


def _existing_person(cur: psycopg.Cursor, collection: str, name: str) -> tuple[int, int]:
    """(collection id, person id) of person ``name``, locked for this transaction. :raises UnknownPerson: none."""
    row = cur.execute(
        "SELECT c.id, p.id FROM people p JOIN collections c ON c.id = p.collection_id "
        "WHERE c.name = %s AND p.name = %s FOR UPDATE OF p", (collection, name)).fetchone()
    if row is None:
        raise UnknownPerson(name)
    return row[0], row[1]


def _face_count(cur: psycopg.Cursor, person_id: int) -> int:
    return cur.execute("SELECT count(*) FROM faces WHERE person_id = %s", (person_id,)).fetchone()[0]


_FACE_ROWS = ("SELECT f.id, p.name, f.encoding, f.created_at, f.external_id "
              "FROM faces f JOIN people p ON p.id = f.person_id")


def _record(row: tuple) -> FaceRecord:
    face_id, name, blob, created_at, external_id = row
    return FaceRecord(face_id, name, stored_matrix(blob)[0].copy(), created_at, external_id)


def _next_version(cur: psycopg.Cursor, collection_id: int, *, whole: bool = False) -> int:
    """Mark the collection changed and return its new version. The row stays locked until the commit, so
    the writers of one collection take their versions in the order they commit: a reader that saw version
    v has every face added by a version up to v. ``whole``: readers cannot apply this change to the gallery
    they hold (a removal, a rename, a replace) and read the collection whole."""
    return cur.execute("UPDATE collections SET version = version + 1, "
                       "reloaded = CASE WHEN %s THEN version + 1 ELSE reloaded END WHERE id = %s RETURNING version",
                       (whole, collection_id)).fetchone()[0]


def _count_faces(cur: psycopg.Cursor, collection_id: int, faces: int, *, counted: bool = False) -> None:
    """The collection's face count moves by ``faces`` (with ``counted``: is ``faces``)."""
    cur.execute("UPDATE collections SET faces = %s + CASE WHEN %s THEN 0 ELSE faces END WHERE id = %s",
                (faces, counted, collection_id))
