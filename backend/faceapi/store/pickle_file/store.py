"""The pickle store: reading (a process applies what others appended), writing (one journal record, or a new
snapshot for an erasure) and recovery (an upgrade of an older format, or what a writer that died left undone).
The files and why they hold up: `faceapi.store.pickle_file`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import pickle
import re
import tempfile
import threading
import uuid
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
from faceapi.matching import nearest_people
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import CollectionSummary
from faceapi.store import Enrollment
from faceapi.store import FaceRecord
from faceapi.store import NameTaken
from faceapi.store import PersonSummary
from faceapi.store import StoreError
from faceapi.store import UnknownCollection
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson
from faceapi.store import new_face_id
from faceapi.store import utc_now
from faceapi.store.pickle_file.collection import NO_TIME
from faceapi.store.pickle_file.collection import Collection
from faceapi.store.pickle_file.collection import Record
from faceapi.store.pickle_file.collection import matrix_path
from faceapi.store.pickle_file.collection import sort_key
from faceapi.store.pickle_file.files import Signature
from faceapi.store.pickle_file.files import WriteLock
from faceapi.store.pickle_file.files import fsync_directory
from faceapi.store.pickle_file.files import signature
from faceapi.store.pickle_file.files import write_all
from faceapi.store.pickle_file.files import write_at
from faceapi.store.pickle_file.files import writing
from faceapi.store.pickle_file.formats import FORMAT_VERSION
from faceapi.store.pickle_file.formats import ROW_BYTES
from faceapi.store.pickle_file.formats import Data
from faceapi.store.pickle_file.formats import microseconds
from faceapi.store.pickle_file.formats import old_format_records
from faceapi.store.pickle_file.formats import parsed
from faceapi.store.pickle_file.journal import framed
from faceapi.store.pickle_file.journal import frames

# The journal is folded into a new snapshot once it is larger than this and than the snapshot.
JOURNAL_FOLD_BYTES = 1 << 20
# A matrix file is rewritten without its removed rows once they are at least this many, and a quarter.
MATRIX_COMPACT_ROWS = 64
_T = TypeVar("_T")


@dataclasses.dataclass
class _State:
    """What this process knows: the snapshot it read, the journal records applied after it, and where
    in the journal it stopped (the end of the last whole record)."""

    snapshot: Signature | None
    generation: str | None
    collections: dict[str, Collection]
    journal: tuple[int, int] | None = None  # (device, inode) of the journal read
    offset: int = 0
    current: bool = False  # the journal read belongs to the snapshot
    old_data: Data | None = None  # a file of an older format, until it is upgraded
    erasing: bool = False  # the write under way removes faces: it commits by a new snapshot

    def collection(self, name: str) -> Collection | None:
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
        self._lock = WriteLock(self.path.with_name(self.path.name + ".lock"))
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

    def people_count(self, *, collection: str = DEFAULT_COLLECTION) -> int:
        return self.gallery(collection=collection).people_count

    def faces(self, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        with self._reading() as state:
            faces = state.collection(collection)
            records = [] if faces is None else faces.records(faces.live_rows(), self.path)
        return sorted(records, key=lambda record: (record.name, sort_key(record)))

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
        snapshot = signature(self.path)
        journal = signature(self.journal_path)
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
                data = parsed(snapshot_file.read(), self.path, self._model_id)
        except FileNotFoundError:
            return _State(None, None, {})
        except OSError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc.strerror}") from exc
        signature = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        self._format_on_disk = data["format"]
        if data["format"] != FORMAT_VERSION:  # upgraded under the lock before any write (see _recover)
            return _State(signature, None, {}, old_data=data)
        try:
            collections = {name: Collection.from_entry(entry) for name, entry in data["collections"].items()}
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
        for record, end in frames(raw, state.offset, self.journal_path):
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
                faces = state.collections[name] = Collection(record["matrix"])
            elif "matrix" in record and record["matrix"] != faces.matrix:
                raise ValueError("a new matrix for a collection that has one")
            faces.apply(record)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, UnicodeError) as exc:
            raise StoreError(f"the store journal {self.journal_path} has a malformed record ({exc!r})") from exc

    # Writing

    def _write(self, change: Callable[[_State], _T]) -> _T:
        """Run ``change`` on the latest state under the cross-process lock. It commits through `_commit`
        (a journal record), or, if it calls `_erase`, by a new snapshot written at its end. The journal
        is also folded into a snapshot once it outgrows it."""
        with self._thread_lock, self._lock.hold():
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
        record: Record = {"op": "add", "c": collection, "start": 0 if faces is None else faces.rows}
        if faces is None:
            record["matrix"] = uuid.uuid4().hex
        matrix = np.stack([np.asarray(r.encoding, dtype=STORED_DTYPE).reshape(ENCODING_WIDTH) for r in records])
        with writing(self.path):
            write_at(matrix_path(self.path, record.get("matrix") or faces.matrix),
                     iter([(record["start"] * ROW_BYTES, matrix.tobytes())]), create=True)
            if faces is None:
                fsync_directory(self.path.parent)
        record.update(names=[r.name for r in records], ids=[r.face_id for r in records],
                      created=[None if r.created_at is None else microseconds(r.created_at) for r in records],
                      external=[r.external_id for r in records])
        self._commit(state, record)

    def _commit(self, state: _State, record: Record) -> None:
        """Append ``record`` to the journal (cutting off a torn record a crash left), fsync: the commit.
        In a write that erases, only apply it: the snapshot that ends the write commits it too."""
        if state.erasing:
            self._apply(state, record)
            return
        frame = framed(record)
        with writing(self.journal_path):
            fd = os.open(self.journal_path, os.O_RDWR)
            try:
                os.ftruncate(fd, state.offset)
                write_all(fd, frame, state.offset)
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
        state.snapshot = self._replace(self.path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL),
                                       keep_backup=self._format_on_disk != FORMAT_VERSION)
        self._format_on_disk = FORMAT_VERSION
        state.generation = generation
        self._replace(self.journal_path, framed({"generation": generation}))
        journal = signature(self.journal_path)
        state.journal, state.offset, state.current = journal[:2], journal[3], True
        self._zero_erased(state)
        self._remove_orphans(state)
        if state.erasing:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.backup_path)  # the upgrade's backup holds what was just removed
            state.erasing = False
        return state

    def _compacted(self, faces: Collection) -> Collection:
        """The collection with its removed rows left out, in a new matrix file."""
        live = faces.live_rows()
        compact = Collection(uuid.uuid4().hex)
        source = faces.matrix_view(self.path)
        with writing(self.path):
            write_at(matrix_path(self.path, compact.matrix),
                     ((start * ROW_BYTES, np.ascontiguousarray(source[live[start:start + 4096]]).tobytes())
                      for start in range(0, len(live), 4096)), create=True, truncate=True)
        compact.add_rows(0, [faces.people[label] for label in faces.labels[live].tolist()],
                         [faces.face_id(row) for row in live.tolist()],
                         [None if value == NO_TIME else int(value) for value in faces.created[live].tolist()],
                         [faces.external.get(row) for row in live.tolist()])
        return compact

    def _zero_erased(self, state: _State) -> None:
        """Overwrite the rows the snapshot's write removed (idempotent: redone after a crash)."""
        for faces in state.collections.values():
            if faces.erased:
                with writing(self.path):
                    write_at(matrix_path(self.path, faces.matrix), ((row * ROW_BYTES, bytes(ROW_BYTES))
                                                                    for row in faces.erased))
                faces.erased = []

    def _recover(self) -> None:
        """Under the lock (taken here unless the caller, a write, holds it): upgrade an older format, or finish
        what a writer that died left undone (the zeroing of erased rows, the removal of files no snapshot names)."""
        with self._lock.hold():
            state = self._state = self._load()
            if self._format_on_disk != FORMAT_VERSION:
                state = self._state = self._upgraded(state)
                self._write_snapshot(state)
            else:
                self._zero_erased(state)
                self._remove_orphans(state)

    def _upgraded(self, state: _State) -> _State:
        """A state holding an older format's faces, their matrix files written (the snapshot is next)."""
        fresh = _State(state.snapshot, None, {})
        for name, records in old_format_records(state.old_data, self.path).items():
            if records:
                self._append_rows(fresh, name, records)
        return fresh

    def _append_rows(self, state: _State, collection: str, records: list[FaceRecord]) -> None:
        """Write ``records`` into a new matrix file of ``collection`` and apply them (no journal: an upgrade)."""
        faces = state.collections[collection] = Collection(uuid.uuid4().hex)
        with writing(self.path):
            write_at(matrix_path(self.path, faces.matrix),
                     iter([(0, np.stack([r.encoding for r in records]).astype(STORED_DTYPE).tobytes())]),
                     create=True, truncate=True)
        faces.add_rows(0, [r.name for r in records], [r.face_id for r in records],
                       [None if r.created_at is None else microseconds(r.created_at) for r in records],
                       [r.external_id for r in records])

    def _replace(self, target: pathlib.Path, payload: bytes, *, keep_backup: bool = False) -> Signature:
        """Write ``payload`` as ``target`` atomically and durably (tmp file, fsync, rename, directory fsync)."""
        with writing(target):
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
                fsync_directory(self.path.parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
        return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)

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
        named = {matrix_path(self.path, faces.matrix).name for faces in state.collections.values()}
        matrices = re.compile(re.escape(self.path.name) + r"\.[0-9a-f]{32}\.f32")
        orphans = [*self.path.parent.glob(f"{self._tmp_prefix()}*.tmp"),
                   *(entry for entry in self.path.parent.iterdir()
                     if matrices.fullmatch(entry.name) and entry.name not in named)]
        for orphan in orphans:
            with contextlib.suppress(OSError):
                orphan.unlink()


def _existing(state: _State, collection: str, name: str) -> Collection:
    faces = state.collection(collection)
    if faces is None or name not in faces.counts:
        raise UnknownPerson(name)
    return faces

