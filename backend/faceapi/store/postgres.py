"""The shared store: PostgreSQL through psycopg 3 and a bounded connection pool.

- Schema changes are numbered migrations, applied at start-up under an advisory
  lock, so any number of instances may start at once and a later change is a new
  entry in `_MIGRATIONS`, not a manual step.
- Every enroll and delete is one transaction that also bumps a one-row version
  counter. Each request reads only that counter (one indexed row); the gallery
  matrix is reloaded only when it moved, so every worker of every instance sees
  every change on its next request without reloading the gallery each time.
- Connections are not process-safe: the pool is created in each worker, after
  fork, on first use (`open=False` spelled out); start-up checks in the master use
  a one-off connection. A dropped connection is replaced by the pool's check; a
  database that is down gives `StoreUnavailable` (503) until it is back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool
from psycopg_pool import PoolTimeout

from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import STORED_DTYPE
from faceapi.matching import Gallery
from faceapi.matching import stored_matrix
from faceapi.store import Enrollment
from faceapi.store import FaceRecord
from faceapi.store import NameTaken
from faceapi.store import PersonSummary
from faceapi.store import StoreError
from faceapi.store import StoreUnavailable
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson
from faceapi.store import new_face_id
from faceapi.store import utc_now

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
]
_MIGRATION_LOCK = 7_431_902_155  # pg_advisory_xact_lock key: one migrator at a time


class PostgresStore:
    """The `faceapi.store.Store` on a PostgreSQL database."""

    def __init__(self, dsn: str, model_id: str, pool_size: int = 4,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """Connect once to migrate the schema; the pool opens later, in the process that uses it.

        :param pool_size: connections per process; one per request thread is enough.
        :param on_reload: called whenever the gallery is read afresh (see `faceapi.store.open_store`).
        :raises StoreUnavailable: the database cannot be reached.
        """
        self._dsn = dsn
        self._model_id = model_id
        self._on_reload = on_reload
        self._pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._cache: tuple[int, Gallery] | None = None
        with _unavailable_on_error(), psycopg.connect(dsn, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            migrate(conn)

    def add_faces(self, name: str, encodings: np.ndarray,
                  external_ids: Sequence[str | None] | None = None) -> Enrollment:
        matrix = np.asarray(encodings, dtype=STORED_DTYPE).reshape(-1, ENCODING_WIDTH)
        created = utc_now()
        records = [FaceRecord(new_face_id(), name, row, created, external_id)
                   for row, external_id in zip(matrix, external_ids or [None] * len(matrix), strict=True)]
        with self._transaction() as cur:
            person_id = _person_id(cur, name)
            self._insert(cur, person_id, records)
            _bump_version(cur)
            count = _face_count(cur, person_id)
        return Enrollment(name, tuple(record.face_id for record in records), count)

    def remove_person(self, name: str) -> int:
        with self._transaction() as cur:
            row = cur.execute(
                "WITH gone AS (DELETE FROM people WHERE name = %s RETURNING id) "
                "SELECT count(f.id) FROM gone LEFT JOIN faces f ON f.person_id = gone.id GROUP BY gone.id",
                (name,),
            ).fetchone()
            if row is None:
                raise UnknownPerson(name)
            _bump_version(cur)
        return row[0]

    def remove_face(self, name: str, face_id: str) -> int:
        with self._transaction() as cur:
            person_id = _existing_person_id(cur, name)
            if cur.execute("DELETE FROM faces WHERE id = %s AND person_id = %s",
                           (face_id, person_id)).rowcount == 0:
                raise UnknownFace(face_id)
            left = _face_count(cur, person_id)
            if left == 0:
                cur.execute("DELETE FROM people WHERE id = %s", (person_id,))
            _bump_version(cur)
        return left

    def rename_person(self, name: str, new_name: str, *, merge: bool = False) -> int:
        with self._transaction() as cur:
            person_id = _existing_person_id(cur, name)
            if new_name != name:
                row = cur.execute("SELECT id FROM people WHERE name = %s FOR UPDATE", (new_name,)).fetchone()
                if row is None:
                    cur.execute("UPDATE people SET name = %s WHERE id = %s", (new_name, person_id))
                elif not merge:
                    raise NameTaken(new_name)
                else:
                    cur.execute("UPDATE faces SET person_id = %s WHERE person_id = %s", (row[0], person_id))
                    cur.execute("DELETE FROM people WHERE id = %s", (person_id,))
                    person_id = row[0]
                _bump_version(cur)
            return _face_count(cur, person_id)

    def people(self, limit: int | None = None, after: str | None = None) -> list[PersonSummary]:
        # COLLATE "C" orders by code point, as Python does, whatever the database's collation.
        with self._transaction() as cur:
            rows = cur.execute(
                # Only this model's faces count, as in person_faces and gallery.
                "SELECT p.name, count(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id "
                "AND f.model = %(model)s "
                'WHERE %(after)s::text IS NULL OR p.name COLLATE "C" > %(after)s '
                'GROUP BY p.name ORDER BY p.name COLLATE "C" LIMIT %(limit)s',
                {"after": after, "limit": limit, "model": self._model_id},
            ).fetchall()
        return [PersonSummary(name, count) for name, count in rows]

    def person_faces(self, name: str) -> list[FaceRecord]:
        with self._transaction() as cur:
            _existing_person_id(cur, name)
            rows = cur.execute(_FACE_ROWS + " WHERE p.name = %s AND f.model = %s ORDER BY f.created_at, f.id",
                               (name, self._model_id)).fetchall()
        return [_record(row) for row in rows]

    def gallery(self) -> Gallery:
        with self._transaction() as cur:
            version = cur.execute("SELECT version FROM gallery_version WHERE id = 1").fetchone()[0]
            cache = self._cache
            if cache is not None and cache[0] == version:
                return cache[1]
            rows = cur.execute(
                "SELECT p.name, f.encoding FROM faces f JOIN people p ON p.id = f.person_id WHERE f.model = %s",
                (self._model_id,),
            ).fetchall()
        gallery = Gallery.from_stored([name for name, _ in rows], b"".join(blob for _, blob in rows))
        self._cache = (version, gallery)
        self._on_reload()
        return gallery

    def faces(self) -> list[FaceRecord]:
        with self._transaction() as cur:
            rows = cur.execute(_FACE_ROWS + ' WHERE f.model = %s ORDER BY p.name COLLATE "C", f.created_at, f.id',
                               (self._model_id,)).fetchall()
        return [_record(row) for row in rows]

    def import_faces(self, records: list[FaceRecord], *, replace: bool = False) -> int:
        added = 0
        with self._transaction() as cur:
            if replace:
                cur.execute("DELETE FROM people")
            person_ids: dict[str, int] = {}
            for record in records:
                if record.name not in person_ids:
                    person_ids[record.name] = _person_id(cur, record.name)
                added += self._insert(cur, person_ids[record.name], [record])
            _bump_version(cur)
        return added

    def _insert(self, cur: psycopg.Cursor, person_id: int, records: list[FaceRecord]) -> int:
        """Insert ``records`` for one person, skipping ids already present; how many were new."""
        added = 0
        for record in records:
            cur.execute(
                "INSERT INTO faces (id, person_id, model, encoding, created_at, external_id) "
                "VALUES (%s, %s, %s, %s, coalesce(%s, now()), %s) ON CONFLICT (id) DO NOTHING",
                (record.face_id, person_id, self._model_id,
                 np.asarray(record.encoding, dtype=STORED_DTYPE).tobytes(), record.created_at, record.external_id),
            )
            added += cur.rowcount
        return added

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
                    kwargs={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "faceapi"},
                    # The pool's background reconnection backs off exponentially for this long; after it
                    # gives up, each request that finds no connection starts a fresh attempt at once, so
                    # the service is back within a request of the database coming back.
                    reconnect_timeout=_RECONNECT_BACKOFF_S,
                    name="faceapi",
                )
                self._pool.open(wait=False)
                self._pool_pid = pid
                self._cache = None
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


def _person_id(cur: psycopg.Cursor, name: str) -> int:
    """The person's id, creating the row if needed; concurrent creators of one name get the same row."""
    return cur.execute(
        "INSERT INTO people (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (name,),
    ).fetchone()[0]


def _existing_person_id(cur: psycopg.Cursor, name: str) -> int:
    """The id of person ``name``, locked for this transaction. :raises UnknownPerson: none."""
    row = cur.execute("SELECT id FROM people WHERE name = %s FOR UPDATE", (name,)).fetchone()
    if row is None:
        raise UnknownPerson(name)
    return row[0]


def _face_count(cur: psycopg.Cursor, person_id: int) -> int:
    return cur.execute("SELECT count(*) FROM faces WHERE person_id = %s", (person_id,)).fetchone()[0]


_FACE_ROWS = ("SELECT f.id, p.name, f.encoding, f.created_at, f.external_id "
              "FROM faces f JOIN people p ON p.id = f.person_id")


def _record(row: tuple) -> FaceRecord:
    face_id, name, blob, created_at, external_id = row
    return FaceRecord(face_id, name, stored_matrix(blob)[0].copy(), created_at, external_id)


def _bump_version(cur: psycopg.Cursor) -> None:
    cur.execute("UPDATE gallery_version SET version = version + 1 WHERE id = 1")
