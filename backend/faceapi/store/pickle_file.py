"""The embedded store: a snapshot, an append-only journal and one matrix file per collection.

Files beside ``<path>`` (all in one directory):

- ``<path>``: the snapshot, a pickle of plain data (format 4): each collection's people, and per face
  its row in the matrix file, id, creation time and external id, in compact arrays.
- ``<path>.journal``: what changed since the snapshot, as framed records (length, CRC-32, pickle).
  Its header names the snapshot's generation, so a journal left by a crash is never applied twice.
- ``<path>.<token>.f32``: a collection's encodings, 128 little-endian float32 a row, rows appended.
  Every process of the host maps it read-only, so the workers share one copy of the gallery.
- ``<path>.lock``: the cross-process write lock (``flock``).

Why it holds up:

- A write holds the lock, brings its view up to date, writes new rows into the matrix file past the
  last committed row and fsyncs them, then appends one journal record and fsyncs it: that append is
  the commit. A crash before it leaves rows no record names (overwritten by the next write) or a torn
  record (readers stop before it; the next writer cuts it off). Nothing grows with the gallery.
- Readers need no lock: each request stats the snapshot and the journal, and applies only the records
  appended since its last look; the gallery is rebuilt from the shared map in time proportional to
  the change.
- A removal is erasure: it writes a new snapshot without the removed faces (tmp file, fsync, rename,
  directory fsync), starts a new journal, then overwrites the removed rows with zeros (redone by the
  next process that opens the store, should a crash come first). The journal is also folded into a
  new snapshot when it outgrows it, and a matrix file is rewritten without its removed rows once they
  are a quarter of it.
- Everything is unpickled by an unpickler that resolves no global at all: a file carrying code is
  refused, not run. Formats 1 to 3 (one pickle holding everything) are upgraded in place when the
  store opens, under the lock; the old file stays as ``<path>.bak`` until the first removal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import io
import mmap
import os
import pathlib
import pickle
import re
import struct
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import numpy as np

from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import STORED_DTYPE
from faceapi.matching import Candidate
from faceapi.matching import Gallery
from faceapi.matching import grown
from faceapi.matching import nearest_people
from faceapi.matching import squared_norms
from faceapi.matching import stored_matrix
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import CollectionSummary
from faceapi.store import Enrollment
from faceapi.store import FaceRecord
from faceapi.store import NameTaken
from faceapi.store import PersonSummary
from faceapi.store import StoreError
from faceapi.store import StoreFull
from faceapi.store import UnknownCollection
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson
from faceapi.store import new_face_id
from faceapi.store import utc_now

FORMAT_VERSION = 4
_READABLE_FORMATS = (1, 2, 3, FORMAT_VERSION)
_ROW_BYTES = ENCODING_WIDTH * STORED_DTYPE.itemsize
_NO_TIME = np.iinfo(np.int64).min  # a face enrolled before creation times were kept (format 1)
_FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload
_HEX_ID = re.compile(r"[0-9a-f]{32}")  # the ids `faceapi.store.new_face_id` makes
# The journal is folded into a new snapshot once it is larger than this and than the snapshot.
JOURNAL_FOLD_BYTES = 1 << 20
# A matrix file is rewritten without its removed rows once they are at least this many, and a quarter.
MATRIX_COMPACT_ROWS = 64
_T = TypeVar("_T")

# Snapshot: {"format": 4, "model": str, "generation": str, "collections": {name: _Entry}}.
# _Entry: {"matrix": token, "rows": int, "people": [name], "labels": <i4 bytes (-1: removed), "ids": 16 bytes
# a row (an id of 32 hex digits, as the service makes them), "other_ids": {row: str} (ids of another form,
# from imports), "created": <i8 bytes (microseconds since the epoch, UTC),
# "external": {row: str}, "erased": [row]: rows the write of this snapshot removed, zeroed after it}.
# Journal: a header record {"generation": str}, then records of the ops in `_Collection.apply`.
# Format 3 (read for upgrades): {"collections": {name: {"people": n, "faces": n, "data": pickle of
# {name: {"ids", "encodings", "created", "external_ids"}}}}}; formats 1 and 2 had one such "people".
_Data = dict[str, Any]
_Record = dict[str, Any]
_Signature = tuple[int, int, int, int]


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: our format needs none, and a global is how a pickle runs code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the store file refers to {module}.{name}; only plain data is allowed")


class _Collection:
    """One collection as a process knows it: per-face metadata in arrays indexed by matrix row, people by
    label. The encodings stay in the matrix file, mapped read-only when a gallery is asked for."""

    def __init__(self, matrix: str) -> None:
        self.matrix = matrix
        self.rows = 0  # rows committed to the matrix file, removed ones included
        self.labels = np.empty(0, np.int32)
        self.created = np.empty(0, np.int64)
        self.ids = np.zeros((0, 16), np.uint8)  # the service's ids (32 hex digits) as their 16 bytes
        self.other_ids: dict[int, str] = {}
        self.external: dict[int, str] = {}
        self.people: list[str] = []  # label -> name; a removed or renamed person's label is never reused
        self.label_of: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.erased: list[int] = []
        self._norms = np.empty(0, np.float64)
        self._normed = 0
        self._map: tuple[int, np.ndarray] | None = None
        self._gallery: Gallery | None = None

    @property
    def face_count(self) -> int:
        return sum(self.counts.values())

    @property
    def removed(self) -> int:
        return self.rows - self.face_count

    def apply(self, record: _Record) -> None:
        """Apply one journal record (also how a writer applies its own)."""
        op = record["op"]
        if op == "add":
            self._add(record["start"], record["names"], record["ids"], record["created"], record["external"])
        elif op == "remove":
            self._remove(record["rows"])
        elif op == "rename":
            self._rename(record["name"], record["to"])
        else:
            raise ValueError(f"unknown journal op {op!r}")
        self._gallery = None

    def _add(self, start: int, names: list[str], ids: list[str], created: list[int | None],
             external: list[str | None]) -> None:
        if start != self.rows or not len(names) == len(ids) == len(created) == len(external):
            raise ValueError("an add record out of sequence")
        if not all(value is None or isinstance(value, str) for value in external):
            raise TypeError("an external id that is not a string")
        end = start + len(names)
        self._reserve(end)
        for row, face_id in enumerate(ids, start):
            if not isinstance(face_id, str):
                raise TypeError("a face id that is not a string")
            if _HEX_ID.fullmatch(face_id):
                self.ids[row] = np.frombuffer(bytes.fromhex(face_id), np.uint8)
            else:
                self.other_ids[row] = face_id
        self.created[start:end] = [_NO_TIME if value is None else value for value in created]
        self.labels[start:end] = [self._label(name) for name in names]
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1
        self.external.update((start + i, value) for i, value in enumerate(external) if value is not None)
        self.rows = end

    def _remove(self, rows: list[int]) -> None:
        for row in rows:
            if not 0 <= row < self.rows or self.labels[row] < 0:
                raise ValueError(f"row {row} is not a face")
            name = self.people[self.labels[row]]
            self.counts[name] -= 1
            if not self.counts[name]:
                del self.counts[name], self.label_of[name]
            self.labels[row] = -1
            self.ids[row] = 0
            self.other_ids.pop(row, None)
            self.created[row] = _NO_TIME
            self.external.pop(row, None)
            if row < self._normed:
                self._norms[row] = np.inf

    def _rename(self, name: str, to: str) -> None:
        old = self.label_of.pop(name)
        count = self.counts.pop(name)
        new = self._label(to)
        self.labels[np.flatnonzero(self.labels[:self.rows] == old)] = new
        self.counts[to] = self.counts.get(to, 0) + count

    def _label(self, name: str) -> int:
        if not isinstance(name, str):
            raise TypeError("a name that is not a string")
        label = self.label_of.get(name)
        if label is None:
            label = self.label_of[name] = len(self.people)
            self.people.append(name)
        return label

    def _reserve(self, rows: int) -> None:
        """Room for ``rows`` rows (`faceapi.matching.grown`: a quarter more at a time)."""
        self.labels = grown(self.labels, rows, -1)
        self.created = grown(self.created, rows, _NO_TIME)
        self.ids = grown(self.ids, rows)

    def rows_of(self, name: str) -> np.ndarray:
        """The matrix rows of person ``name``. :raises UnknownPerson: no such person."""
        label = self.label_of.get(name)
        if label is None:
            raise UnknownPerson(name)
        return np.flatnonzero(self.labels[:self.rows] == label)

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.labels[:self.rows] >= 0)

    def face_id(self, row: int) -> str:
        return self.other_ids.get(row) or self.ids[row].tobytes().hex()

    def with_id(self, rows: np.ndarray, face_id: str) -> np.ndarray:
        """Those of ``rows`` whose face has id ``face_id``."""
        if not _HEX_ID.fullmatch(face_id):
            return rows[[self.other_ids.get(row) == face_id for row in rows.tolist()]].astype(np.intp)
        found = rows[(self.ids[rows] == np.frombuffer(bytes.fromhex(face_id), np.uint8)).all(axis=1)]
        return found[[row not in self.other_ids for row in found.tolist()]].astype(np.intp)

    def known_ids(self) -> set[str]:
        """The ids of every face (for an import's check, without a string per row held)."""
        rows = self.live_rows()
        hexes = self.ids[rows[[row not in self.other_ids for row in rows.tolist()]]].tobytes().hex()
        return {hexes[i:i + 32] for i in range(0, len(hexes), 32)} | {self.other_ids[row] for row in rows.tolist()
                                                                    if row in self.other_ids}

    def records(self, rows: np.ndarray, where: pathlib.Path) -> list[FaceRecord]:
        """The faces at ``rows`` (encodings copied out of the shared map), oldest first as `_sort_key` says."""
        matrix = self.matrix_view(where)
        found = [FaceRecord(self.face_id(row), self.people[self.labels[row]], matrix[row].copy(),
                            None if self.created[row] == _NO_TIME else _datetime(int(self.created[row])),
                            self.external.get(row))
                 for row in rows.tolist()]
        return sorted(found, key=_sort_key)

    def matrix_view(self, where: pathlib.Path) -> np.ndarray:
        """The committed rows of the matrix file, mapped read-only (the map is shared by the host's processes)."""
        if self._map is None or self._map[0] < self.rows:
            try:
                with open(_matrix_path(where, self.matrix), "rb") as matrix_file:
                    mapped = mmap.mmap(matrix_file.fileno(), self.rows * _ROW_BYTES, access=mmap.ACCESS_READ) \
                        if self.rows else b""
            except (OSError, ValueError) as exc:
                raise StoreError(f"cannot map the matrix file of the store {where}: {exc}") from exc
            self._map = (self.rows, stored_matrix(mapped))
        return self._map[1][:self.rows]

    def gallery(self, where: pathlib.Path) -> Gallery:
        """The collection's gallery; after a change, only the new rows' norms are computed."""
        if self._gallery is None:
            matrix = self.matrix_view(where)
            if self._normed < self.rows:
                self._norms = grown(self._norms, len(self.labels), np.inf)
                fresh = slice(self._normed, self.rows)
                self._norms[fresh] = np.where(self.labels[fresh] >= 0, squared_norms(matrix[fresh]), np.inf)
                self._normed = self.rows
            self._gallery = Gallery(matrix, self._norms[:self.rows], self.labels[:self.rows], self.people,
                                    self.face_count)
        return self._gallery

    def entry(self) -> _Data:
        """The collection as the snapshot keeps it, without a trace of removed people or faces."""
        live = sorted(self.counts)
        relabel = np.full(len(self.people) + 1, -1, np.int32)  # index -1 (removed) stays -1
        relabel[[self.label_of[name] for name in live]] = np.arange(len(live), dtype=np.int32)
        return {"matrix": self.matrix, "rows": self.rows, "people": live,
                "labels": relabel[self.labels[:self.rows]].astype("<i4").tobytes(),
                "ids": self.ids[:self.rows].tobytes(), "other_ids": dict(self.other_ids),
                "created": self.created[:self.rows].astype("<i8").tobytes(),
                "external": dict(self.external), "erased": list(self.erased)}

    @classmethod
    def from_entry(cls, entry: _Data) -> _Collection:
        rows, people = entry["rows"], entry["people"]
        collection = cls(entry["matrix"])
        collection.rows = rows
        collection.labels = np.frombuffer(entry["labels"], "<i4").astype(np.int32)
        collection.created = np.frombuffer(entry["created"], "<i8").astype(np.int64)
        collection.ids = np.frombuffer(entry["ids"], np.uint8).reshape(-1, 16).copy()
        if not len(collection.labels) == len(collection.created) == len(collection.ids) == rows \
                or not all(isinstance(name, str) for name in people) \
                or (rows and not -1 <= collection.labels.min() <= collection.labels.max() < len(people)):
            raise ValueError("inconsistent arrays")
        collection.people = list(people)
        collection.label_of = {name: label for label, name in enumerate(people)}
        counts = np.bincount(collection.labels[collection.labels >= 0], minlength=len(people))
        collection.counts = {name: int(count) for name, count in zip(people, counts, strict=True) if count}
        collection.external = {int(row): str(value) for row, value in entry["external"].items()}
        collection.other_ids = {int(row): str(value) for row, value in entry["other_ids"].items()}
        collection.erased = [int(row) for row in entry["erased"]]
        return collection


@dataclasses.dataclass
class _State:
    """What this process knows: the snapshot it read, the journal records applied after it, and where
    in the journal it stopped (the end of the last whole record)."""

    snapshot: _Signature | None
    generation: str | None
    collections: dict[str, _Collection]
    journal: tuple[int, int] | None = None  # (device, inode) of the journal read
    offset: int = 0
    current: bool = False  # the journal read belongs to the snapshot
    old_data: _Data | None = None  # a file of an older format, until it is upgraded
    erasing: bool = False  # the write under way removes faces: it commits by a new snapshot

    def collection(self, name: str) -> _Collection | None:
        found = self.collections.get(name)
        return found if found is not None and found.counts else None


class PickleStore:
    """The `faceapi.store.Store` on local files: a pickled snapshot, a journal and shared matrix files."""

    def __init__(self, path: str | os.PathLike[str], model_id: str,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """Open and read the store at ``path``; its directory is created if missing.

        :param on_reload: called whenever this process reads another process's changes
            (see `faceapi.store.open_store`).
        :raises StoreError: the files cannot be read, or are not a store of these models.
        """
        self._on_reload = on_reload
        self.path = pathlib.Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._model_id = model_id
        self._thread_lock = threading.Lock()
        self._state: _State | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.path.parent}: {exc.strerror}") from exc
        with self._thread_lock:
            self._refresh()  # a file that is not a store is refused here, before anything is written beside it
            if os.access(self.path.parent, os.W_OK):  # a store on read-only media is only read
                self._recover()  # under the lock: what a writer that died left undone

    def add_faces(self, name: str, encodings: np.ndarray, external_ids: Sequence[str | None] | None = None,
                  *, collection: str = DEFAULT_COLLECTION) -> Enrollment:
        matrix = np.asarray(encodings, dtype=STORED_DTYPE).reshape(-1, ENCODING_WIDTH)
        created = utc_now()
        records = [FaceRecord(new_face_id(), name, row, created, external_id)
                   for row, external_id in zip(matrix, external_ids or [None] * len(matrix), strict=True)]

        def add(state: _State) -> Enrollment:
            self._append_faces(state, collection, records)
            return Enrollment(name, tuple(r.face_id for r in records), state.collections[collection].counts[name])

        return self._write(add)

    def remove_person(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        def remove(state: _State) -> int:
            rows = _existing(state, collection, name).rows_of(name)
            self._erase(state, collection, rows)
            return len(rows)

        return self._write(remove)

    def remove_face(self, name: str, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        def remove(state: _State) -> int:
            faces = _existing(state, collection, name)
            rows = faces.rows_of(name)
            found = faces.with_id(rows, face_id)
            if not len(found):
                raise UnknownFace(face_id)
            self._erase(state, collection, found)
            return len(rows) - 1

        return self._write(remove)

    def rename_person(self, name: str, new_name: str, *, merge: bool = False,
                      collection: str = DEFAULT_COLLECTION) -> int:
        def rename(state: _State) -> int:
            faces = _existing(state, collection, name)
            if new_name == name:
                return faces.counts[name]
            if new_name in faces.counts and not merge:
                raise NameTaken(new_name)
            self._commit(state, {"op": "rename", "c": collection, "name": name, "to": new_name})
            return faces.counts[new_name]

        return self._write(rename)

    def people(self, limit: int | None = None, after: str | None = None, *,
               collection: str = DEFAULT_COLLECTION) -> list[PersonSummary]:
        with self._reading() as state:
            counts = dict(faces.counts) if (faces := state.collection(collection)) else {}
        names = sorted(name for name in counts if after is None or name > after)
        return [PersonSummary(name, counts[name]) for name in names[:limit]]

    def person_faces(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        with self._reading() as state:
            faces = _existing(state, collection, name)
            return faces.records(faces.rows_of(name), self.path)

    def gallery(self, *, collection: str = DEFAULT_COLLECTION) -> Gallery:
        with self._reading() as state:
            faces = state.collection(collection)
            return Gallery.empty() if faces is None else faces.gallery(self.path)

    def nearest(self, encodings: np.ndarray, count: int, *,
                collection: str = DEFAULT_COLLECTION) -> list[list[Candidate]]:
        return nearest_people(self.gallery(collection=collection), encodings, count)

    def faces(self, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        with self._reading() as state:
            faces = state.collection(collection)
            records = [] if faces is None else faces.records(faces.live_rows(), self.path)
        return sorted(records, key=lambda record: (record.name, _sort_key(record)))

    def import_faces(self, records: list[FaceRecord], *, replace: bool = False,
                     collection: str = DEFAULT_COLLECTION) -> int:
        def add_new(state: _State) -> int:
            faces = state.collection(collection)
            if replace and faces is not None:
                self._erase(state, collection, faces.live_rows())
                faces = None
            known = set() if faces is None else faces.known_ids()
            new: list[FaceRecord] = []
            for record in records:
                if record.face_id not in known:
                    known.add(record.face_id)
                    new.append(record)
            if new:
                self._append_faces(state, collection, new)
            return len(new)

        return self._write(add_new)

    def collections(self) -> list[CollectionSummary]:
        with self._reading() as state:
            return [CollectionSummary(name, len(faces.counts), faces.face_count)
                    for name, faces in sorted(state.collections.items()) if faces.counts]

    def remove_collection(self, collection: str) -> int:
        def remove(state: _State) -> int:
            faces = state.collection(collection)
            if faces is None:
                raise UnknownCollection(collection)
            rows = faces.live_rows()
            self._erase(state, collection, rows)
            return len(rows)

        return self._write(remove)

    def check(self) -> None:
        with self._reading():
            pass

    def close(self) -> None:
        self._state = None

    # Reading

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_State]:
        """The state, brought up to date, held still while the caller reads it (a write in another
        thread of this process waits)."""
        with self._thread_lock:
            yield self._refresh()

    def _refresh(self) -> _State:
        """Apply what other processes wrote since this process last looked (the caller holds the thread lock)."""
        snapshot = _signature(self.path)
        journal = _signature(self.journal_path)
        state = self._state
        if state is not None and state.snapshot == snapshot:
            if journal is None or (journal[:2] == state.journal and journal[3] == state.offset):
                return state
            if journal[:2] == state.journal and state.current:
                if self._read_journal(state):
                    self._on_reload()
                return state
        self._state = state = self._load()
        if state.old_data is not None:  # a file of an older format, put back behind this process's back
            self._recover()
            state = self._state
        self._on_reload()
        return state

    def _load(self) -> _State:
        """Read the snapshot, then the journal that belongs to it."""
        self._format_on_disk = FORMAT_VERSION
        try:
            with open(self.path, "rb") as snapshot_file:
                stat = os.fstat(snapshot_file.fileno())
                data = self._parse(snapshot_file.read())
        except FileNotFoundError:
            return _State(None, None, {})
        except OSError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc.strerror}") from exc
        signature = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        self._format_on_disk = data["format"]
        if data["format"] != FORMAT_VERSION:  # upgraded under the lock before any write (see _recover)
            return _State(signature, None, {}, old_data=data)
        try:
            collections = {name: _Collection.from_entry(entry) for name, entry in data["collections"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"the store {self.path} has a malformed collection record ({exc})") from exc
        state = _State(signature, data["generation"], collections)
        self._read_journal(state)
        return state

    def _read_journal(self, state: _State) -> bool:
        """Apply the journal's whole records past ``state.offset``; return whether there were any."""
        try:
            with open(self.journal_path, "rb") as journal_file:
                stat = os.fstat(journal_file.fileno())
                identity = (stat.st_dev, stat.st_ino)
                if identity != state.journal:
                    state.journal, state.offset, state.current = identity, 0, False
                journal_file.seek(state.offset)
                raw = journal_file.read()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot read the store journal {self.journal_path}: {exc.strerror}") from exc
        applied = False
        for record, end in _frames(raw, state.offset, self.journal_path):
            if state.offset == 0:  # the header: is this journal the snapshot's?
                state.current = isinstance(record, dict) and record.get("generation") == state.generation
            elif state.current:
                self._apply(state, record)
                applied = True
            state.offset = end
        return applied

    def _apply(self, state: _State, record: Any) -> None:
        try:
            name = record["c"]
            faces = state.collections.get(name)
            if faces is None:
                faces = state.collections[name] = _Collection(record["matrix"])
            elif "matrix" in record and record["matrix"] != faces.matrix:
                raise ValueError("a new matrix for a collection that has one")
            faces.apply(record)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, UnicodeError) as exc:
            raise StoreError(f"the store journal {self.journal_path} has a malformed record ({exc!r})") from exc

    def _parse(self, raw: bytes) -> _Data:
        data = _unpickled(raw, self.path)
        if not isinstance(data, dict) or data.get("format") not in _READABLE_FORMATS:
            raise StoreError(f"the store {self.path} is not in a store format this version reads "
                             f"({', '.join(map(str, _READABLE_FORMATS))})")
        if data.get("model") != self._model_id:
            raise StoreError(f"the store {self.path} holds encodings made by models {data.get('model')!r}, "
                             f"not by this service's {self._model_id!r}; they cannot be mixed")
        if not isinstance(data.get("collections", {}), dict):
            raise StoreError(f"the store {self.path} has a malformed collection record")
        return data

    # Writing

    def _write(self, change: Callable[[_State], _T]) -> _T:
        """Run ``change`` on the latest state under the cross-process lock. It commits through `_commit`
        (a journal record), or, if it calls `_erase`, by a new snapshot written at its end. The journal
        is also folded into a snapshot once it outgrows it."""
        with self._thread_lock, self._file_lock():
            try:
                state = self._refresh()
                if not state.current:  # no journal for this snapshot yet (a new store, or a crash)
                    state = self._write_snapshot(state)
                self._remove_orphans(state)
                result = change(state)
                if state.erasing or state.offset > max(JOURNAL_FOLD_BYTES, state.snapshot[3] if state.snapshot else 0):
                    self._write_snapshot(state)
                return result
            except BaseException:
                self._state = None  # what is in memory may be ahead of the files: read them again
                raise

    def _append_faces(self, state: _State, collection: str, records: list[FaceRecord]) -> None:
        """Write the encodings past the collection's last row, then commit one add record."""
        faces = state.collections.get(collection)
        record: _Record = {"op": "add", "c": collection, "start": 0 if faces is None else faces.rows}
        if faces is None:
            record["matrix"] = uuid.uuid4().hex
        matrix = np.stack([np.asarray(r.encoding, dtype=STORED_DTYPE).reshape(ENCODING_WIDTH) for r in records])
        with self._writing(self.path):
            fd = os.open(_matrix_path(self.path, record.get("matrix") or faces.matrix), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _write_all(fd, matrix.tobytes(), record["start"] * _ROW_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
            if faces is None:
                _fsync_directory(self.path.parent)
        record.update(names=[r.name for r in records], ids=[r.face_id for r in records],
                      created=[None if r.created_at is None else _microseconds(r.created_at) for r in records],
                      external=[r.external_id for r in records])
        self._commit(state, record)

    def _commit(self, state: _State, record: _Record) -> None:
        """Append ``record`` to the journal (cutting off a torn record a crash left), fsync: the commit.
        In a write that erases, only apply it: the snapshot that ends the write commits it too."""
        if state.erasing:
            self._apply(state, record)
            return
        payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        with self._writing(self.journal_path):
            fd = os.open(self.journal_path, os.O_RDWR)
            try:
                os.ftruncate(fd, state.offset)
                _write_all(fd, frame, state.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._apply(state, record)
        state.offset += len(frame)

    def _erase(self, state: _State, collection: str, rows: np.ndarray) -> None:
        """Remove the faces at ``rows`` with no trace: the write ends with a new snapshot without them,
        then their rows are zeroed."""
        faces = state.collections[collection]
        faces.apply({"op": "remove", "rows": rows.tolist()})
        faces.erased += rows.tolist()
        state.erasing = True

    def _write_snapshot(self, state: _State) -> _State:
        """Fold everything into a new snapshot and start its journal; matrix files with many removed
        rows are rewritten first, and then files no longer named are deleted."""
        generation = uuid.uuid4().hex
        for name, faces in list(state.collections.items()):
            if not faces.counts:
                del state.collections[name]
            elif faces.removed >= MATRIX_COMPACT_ROWS and faces.removed * 4 >= faces.rows:
                state.collections[name] = self._compacted(faces)
        data = {"format": FORMAT_VERSION, "model": self._model_id, "generation": generation,
                "collections": {name: faces.entry() for name, faces in state.collections.items()}}
        header = pickle.dumps({"generation": generation}, protocol=pickle.HIGHEST_PROTOCOL)
        state.snapshot = self._replace(self.path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL),
                                       keep_backup=self._format_on_disk != FORMAT_VERSION)
        self._format_on_disk = FORMAT_VERSION
        state.generation = generation
        self._replace(self.journal_path, _FRAME.pack(len(header), zlib.crc32(header)) + header)
        journal = _signature(self.journal_path)
        state.journal, state.offset, state.current = journal[:2], journal[3], True
        self._zero_erased(state)
        self._remove_orphans(state)
        if state.erasing:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.backup_path)  # the upgrade's backup holds what was just removed
            state.erasing = False
        return state

    def _compacted(self, faces: _Collection) -> _Collection:
        """The collection with its removed rows left out, in a new matrix file."""
        live = faces.live_rows()
        compact = _Collection(uuid.uuid4().hex)
        source = faces.matrix_view(self.path)
        with self._writing(self.path):
            fd = os.open(_matrix_path(self.path, compact.matrix), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for start in range(0, len(live), 4096):
                    _write_all(fd, np.ascontiguousarray(source[live[start:start + 4096]]).tobytes(),
                               start * _ROW_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        compact._add(0, [faces.people[label] for label in faces.labels[live].tolist()],
                     [faces.face_id(row) for row in live.tolist()],
                     [None if value == _NO_TIME else int(value) for value in faces.created[live].tolist()],
                     [faces.external.get(row) for row in live.tolist()])
        return compact

    def _zero_erased(self, state: _State) -> None:
        """Overwrite the rows the snapshot's write removed (idempotent: redone after a crash)."""
        for faces in state.collections.values():
            if faces.erased:
                with self._writing(self.path):
                    fd = os.open(_matrix_path(self.path, faces.matrix), os.O_RDWR)
                    try:
                        for row in faces.erased:
                            _write_all(fd, bytes(_ROW_BYTES), row * _ROW_BYTES)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                faces.erased = []

    def _recover(self) -> None:
        """Under the lock: upgrade an older format, or finish what a writer that died left undone (the
        zeroing of erased rows, the removal of files no snapshot names)."""
        with self._file_lock():
            state = self._state = self._load()
            if self._format_on_disk != FORMAT_VERSION:
                state = self._state = self._upgraded(state)
                self._write_snapshot(state)
            else:
                self._zero_erased(state)
                self._remove_orphans(state)

    def _upgraded(self, state: _State) -> _State:
        """A state holding an older format's faces, their matrix files written (the snapshot is next)."""
        data = state.old_data
        if data["format"] < 3:
            _upgrade_to_format_3(data, self.path)
        collections = data.get("collections")
        if not isinstance(collections, dict) or not all(
                isinstance(name, str) and _valid_entry(entry) for name, entry in collections.items()):
            raise StoreError(f"the store {self.path} has a malformed collection record")
        fresh = _State(state.snapshot, None, {})
        for name, entry in collections.items():
            records = [record for person, faces in _parse_people(entry["data"], self.path).items()
                       for record in _format_3_records(person, faces)]
            if records:
                self._append_rows(fresh, name, records)
        return fresh

    def _append_rows(self, state: _State, collection: str, records: list[FaceRecord]) -> None:
        """Write ``records`` into a new matrix file of ``collection`` and apply them (no journal: an upgrade)."""
        faces = state.collections[collection] = _Collection(uuid.uuid4().hex)
        with self._writing(self.path):
            fd = os.open(_matrix_path(self.path, faces.matrix), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, np.stack([r.encoding for r in records]).astype(STORED_DTYPE).tobytes(), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        faces._add(0, [r.name for r in records], [r.face_id for r in records],
                   [None if r.created_at is None else _microseconds(r.created_at) for r in records],
                   [r.external_id for r in records])

    def _replace(self, target: pathlib.Path, payload: bytes, *, keep_backup: bool = False) -> _Signature:
        """Write ``payload`` as ``target`` atomically and durably (tmp file, fsync, rename, directory fsync)."""
        with self._writing(target):
            fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=self._tmp_prefix(), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as tmp_file:
                    tmp_file.write(payload)
                    tmp_file.flush()
                    os.fsync(tmp_file.fileno())
                    stat = os.fstat(tmp_file.fileno())
                if keep_backup and target.exists():
                    self._link_as_backup(target)
                os.replace(tmp_name, target)
                _fsync_directory(self.path.parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
        return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @contextlib.contextmanager
    def _writing(self, target: pathlib.Path) -> Iterator[None]:
        """Turn an OS error into the store's errors: a full disk into `StoreFull`."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"no space left to write the store {target}; it is unchanged") from exc
            raise StoreError(f"cannot write the store {target}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store lock {self._lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock_fd)  # closing releases the flock

    def _link_as_backup(self, source: pathlib.Path) -> None:
        """Point ``<path>.bak`` at ``source``: a hard link, swapped in atomically."""
        link_name = self.path.with_name(f"{self._tmp_prefix()}bak.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link_name)
        os.link(source, link_name)
        os.replace(link_name, self.backup_path)
        # rename() is a no-op when both names already link the same file (a writer died just here).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link_name)

    def _tmp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_orphans(self, state: _State) -> None:
        """Delete what a writer that died left (temporary files) and matrix files no snapshot names;
        only lock holders create either."""
        named = {_matrix_path(self.path, faces.matrix).name for faces in state.collections.values()}
        matrices = re.compile(re.escape(self.path.name) + r"\.[0-9a-f]{32}\.f32")
        orphans = [*self.path.parent.glob(f"{self._tmp_prefix()}*.tmp"),
                   *(entry for entry in self.path.parent.iterdir()
                     if matrices.fullmatch(entry.name) and entry.name not in named)]
        for orphan in orphans:
            with contextlib.suppress(OSError):
                orphan.unlink()


def _existing(state: _State, collection: str, name: str) -> _Collection:
    faces = state.collection(collection)
    if faces is None or name not in faces.counts:
        raise UnknownPerson(name)
    return faces


def _frames(raw: bytes, offset: int, where: pathlib.Path) -> Iterator[tuple[Any, int]]:
    """The whole records in ``raw`` (journal bytes from ``offset``) with the offset past each; stops at a
    torn or incomplete one."""
    position = 0
    while position + _FRAME.size <= len(raw):
        length, checksum = _FRAME.unpack_from(raw, position)
        payload = raw[position + _FRAME.size:position + _FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != checksum:
            return
        position += _FRAME.size + length
        yield _unpickled(payload, where), offset + position


def _matrix_path(where: pathlib.Path, token: str) -> pathlib.Path:
    if not (isinstance(token, str) and len(token) == 32 and all(c in "0123456789abcdef" for c in token)):
        raise StoreError(f"the store {where} names a malformed matrix file")
    return where.with_name(f"{where.name}.{token}.f32")


def _write_all(fd: int, payload: bytes, offset: int) -> None:
    view = memoryview(payload)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _signature(path: pathlib.Path) -> _Signature | None:
    """Identity of a file's current version; ``os.replace`` always makes a new inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from exc
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _sort_key(record: FaceRecord) -> tuple[bool, datetime.datetime, str]:
    """Oldest first (unknown times first), then by id: the order PostgreSQL gives."""
    return (record.created_at is not None, record.created_at or _EPOCH, record.face_id)


# Formats 1 to 3, read for upgrades.

def _valid_person(name: Any, person: Any) -> bool:
    if not (isinstance(name, str) and isinstance(person, dict) and isinstance(person.get("ids"), list)):
        return False
    count = len(person["ids"])
    return (
        isinstance(person.get("encodings"), bytes)
        and len(person["encodings"]) == count * _ROW_BYTES
        and all(isinstance(value, str) for value in person["ids"])
        and isinstance(person.get("created"), list) and len(person["created"]) == count
        and all(value is None or isinstance(value, int) for value in person["created"])
        and isinstance(person.get("external_ids"), list) and len(person["external_ids"]) == count
        and all(value is None or isinstance(value, str) for value in person["external_ids"])
    )


def _upgrade_to_format_3(data: _Data, where: pathlib.Path) -> None:
    """Format 3 holds collections, and formats 1 and 2 one: theirs becomes the default collection.
    Format 2 added creation times (unknown for older faces) and external ids (none) to each person."""
    people = data.pop("people", None)
    if not isinstance(people, dict):
        return  # and no "collections" either: refused as malformed
    if data["format"] == 1:
        for person in people.values():
            if isinstance(person, dict) and isinstance(person.get("ids"), list):
                person.setdefault("created", [None] * len(person["ids"]))
                person.setdefault("external_ids", [None] * len(person["ids"]))
    _check_people(people, where)
    data["collections"] = {DEFAULT_COLLECTION: {"people": len(people), "faces": 0,
                                                "data": pickle.dumps(people, protocol=pickle.HIGHEST_PROTOCOL)}}


def _format_3_records(name: str, person: dict[str, Any]) -> list[FaceRecord]:
    return [FaceRecord(face_id, name, encoding, None if created is None else _datetime(created), external_id)
            for face_id, encoding, created, external_id in zip(
                person["ids"], stored_matrix(person["encodings"]), person["created"], person["external_ids"],
                strict=True)]


def _unpickled(raw: bytes, where: pathlib.Path) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # any malformed pickle: the message says which file
        backup = where.with_name(where.name + ".bak")
        hint = f"; the previous version is in {backup}" if backup.is_file() and backup != where else ""
        raise StoreError(f"the store {where} is not a valid store file ({exc}){hint}") from exc


def _parse_people(blob: bytes, where: pathlib.Path) -> dict[str, Any]:
    return _check_people(_unpickled(blob, where), where)


def _check_people(people: Any, where: pathlib.Path) -> dict[str, Any]:
    if not isinstance(people, dict) or not all(_valid_person(name, person) for name, person in people.items()):
        raise StoreError(f"the store {where} has a malformed person record")
    return people


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("people"), int) and isinstance(entry.get("faces"), int)
            and isinstance(entry.get("data"), bytes))


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _microseconds(moment: datetime.datetime) -> int:
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1)


def _datetime(microseconds: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(microseconds=microseconds)


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename or a new file durable: a directory entry lives in the directory's own blocks."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
