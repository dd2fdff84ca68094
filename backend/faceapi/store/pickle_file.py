"""The embedded store: one pickle file, safe for many threads and processes.

- Every read-modify-write holds an exclusive ``flock`` on ``<path>.lock`` and
  reads the file afresh, so concurrent writers in other workers lose nothing.
- A write goes to a temporary file in the same directory, is flushed and
  fsynced, and replaces the store with ``os.replace``; then the directory is
  fsynced. A crash at any point leaves the old or the new file, never a torn one.
  The previous file is kept as ``<path>.bak``.
- Readers need no lock: each request stats the file and reloads only when it
  changed, so every worker sees every other worker's writes on its next request.
- The file is unpickled by an unpickler that resolves no global at all: the
  format holds only dicts, lists, strings, numbers and bytes (encodings are raw
  little-endian float32), so a file carrying code is refused, not run.
- A file of an older format is upgraded in place when the store opens, under
  the lock, with every face kept (format 3 puts the faces of formats 1 and 2 in
  the default collection); the file it replaces stays as ``<path>.bak``.
- A collection's gallery matrix is built when a request first needs it, and
  rebuilt only after that collection changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import io
import os
import pathlib
import pickle
import tempfile
import threading
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

FORMAT_VERSION = 3
_READABLE_FORMATS = (1, 2, FORMAT_VERSION)
_T = TypeVar("_T")

# {"format": 3, "model": str, "collections": {collection: _Entry}}, a collection without people left out.
# _Entry: {"people": int, "faces": int, "data": bytes}: its counts, and its people pickled on their own
# ({name: _Person}), so that a process unpickles only the collections it is asked for, and a write
# re-pickles only the collection it changes. Format 2 had "people": {name: _Person} (one collection);
# format 1's _Person had only "ids" and "encodings".
# _Person: {"ids": [str], "encodings": bytes (n x 128 float32), "created": [int microseconds since
# the epoch, UTC | None], "external_ids": [str | None]}: parallel lists, one entry per face.
_Data = dict[str, Any]
_Entry = dict[str, Any]
_Person = dict[str, Any]
_People = dict[str, _Person]
_Signature = tuple[int, int, int, int]


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: our format needs none, and a global is how a pickle runs code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the store file refers to {module}.{name}; only plain data is allowed")


@dataclasses.dataclass
class _Contents:
    """One version of the file as read: its data (with the pickled people of the collections kept), and
    the collections unpickled and the galleries built from it so far."""

    signature: _Signature | None
    data: _Data
    people: dict[str, _People] = dataclasses.field(default_factory=dict)
    galleries: dict[str, Gallery] = dataclasses.field(default_factory=dict)

    def collection(self, collection: str, where: pathlib.Path) -> _People | None:
        """The collection's people ({} if it has none); None if this copy did not keep its data."""
        people = self.people.get(collection)
        if people is None:
            entry = self.data["collections"].get(collection)
            if entry is None:
                return {}
            if entry["data"] is None:
                return None
            people = self.people[collection] = _parse_people(entry["data"], where)
        return people

    def gallery(self, collection: str, people: _People) -> Gallery:
        gallery = self.galleries.get(collection)
        if gallery is None:  # two threads may both build it; either result is the same
            gallery = self.galleries[collection] = _gallery_of(people)
        return gallery

    def keep_unchanged(self, older: _Contents | None) -> _Contents:
        """Take over ``older``'s unpickled collections (and galleries) that this version has not changed."""
        if older is not None:
            for collection, people in older.people.items():
                if _stored(older.data, collection) == _stored(self.data, collection) is not None:
                    self.people.setdefault(collection, people)
                    if collection in older.galleries:
                        self.galleries.setdefault(collection, older.galleries[collection])
        return self

    def keeping_only(self, collections: set[str]) -> _Contents:
        """Drop the pickled data of the other collections: a process holds the collections it serves."""
        for name, entry in self.data["collections"].items():
            if name not in collections:
                entry["data"] = None
        return self


class PickleStore:
    """The `faceapi.store.Store` on a local pickle file."""

    def __init__(self, path: str | os.PathLike[str], model_id: str,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """Open and read the store at ``path``; its directory is created if missing.

        :param on_reload: called whenever the file is read afresh for readers (see `faceapi.store.open_store`).
        :raises StoreError: the file cannot be read, or is not a store of these models.
        """
        self._on_reload = on_reload
        self.path = pathlib.Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._model_id = model_id
        self._thread_lock = threading.Lock()
        self._cache: _Contents | None = None
        self._served: set[str] = set()  # the collections this process was asked for: it keeps their data
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.path.parent}: {exc.strerror}") from exc
        if self._current().data["format"] != FORMAT_VERSION:
            self._upgrade_in_place()

    def add_faces(self, name: str, encodings: np.ndarray, external_ids: Sequence[str | None] | None = None,
                  *, collection: str = DEFAULT_COLLECTION) -> Enrollment:
        matrix = np.asarray(encodings, dtype=STORED_DTYPE).reshape(-1, ENCODING_WIDTH)
        created = utc_now()
        records = [FaceRecord(new_face_id(), name, row, created, external_id)
                   for row, external_id in zip(matrix, external_ids or [None] * len(matrix), strict=True)]

        def add(people: _People) -> Enrollment:
            person = people.setdefault(name, _new_person())
            for record in records:
                _append(person, record)
            return Enrollment(name, tuple(record.face_id for record in records), len(person["ids"]))

        return self._update(collection, add)

    def remove_person(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        def remove(people: _People) -> int:
            count = len(_person(people, name)["ids"])
            del people[name]
            return count

        # Right to erasure: the backup must not keep what was deleted.
        return self._update(collection, remove, erase=True)

    def remove_face(self, name: str, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        def remove(people: _People) -> int:
            person = _person(people, name)
            try:
                index = person["ids"].index(face_id)
            except ValueError:
                raise UnknownFace(face_id) from None
            kept = [i for i in range(len(person["ids"])) if i != index]
            width = ENCODING_WIDTH * STORED_DTYPE.itemsize
            person["encodings"] = b"".join(person["encodings"][i * width:(i + 1) * width] for i in kept)
            for field in ("ids", "created", "external_ids"):
                person[field] = [person[field][i] for i in kept]
            if not kept:
                del people[name]
            return len(kept)

        return self._update(collection, remove, erase=True)

    def rename_person(self, name: str, new_name: str, *, merge: bool = False,
                      collection: str = DEFAULT_COLLECTION) -> int:
        def rename(people: _People) -> int:
            person = _person(people, name)
            if new_name == name:
                return len(person["ids"])
            target = people.get(new_name)
            if target is not None and not merge:
                raise NameTaken(new_name)
            del people[name]
            if target is None:
                people[new_name] = person
                return len(person["ids"])
            for field in ("ids", "created", "external_ids", "encodings"):
                target[field] += person[field]
            return len(target["ids"])

        return self._update(collection, rename)

    def people(self, limit: int | None = None, after: str | None = None, *,
               collection: str = DEFAULT_COLLECTION) -> list[PersonSummary]:
        people = self._collection(collection)[1]
        names = sorted(name for name in people if after is None or name > after)
        return [PersonSummary(name, len(people[name]["ids"])) for name in names[:limit]]

    def person_faces(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        return _records(name, _person(self._collection(collection)[1], name))

    def gallery(self, *, collection: str = DEFAULT_COLLECTION) -> Gallery:
        contents, people = self._collection(collection)
        return contents.gallery(collection, people)

    def nearest(self, encodings: np.ndarray, count: int, *,
                collection: str = DEFAULT_COLLECTION) -> list[list[Candidate]]:
        return nearest_people(self.gallery(collection=collection), encodings, count)

    def faces(self, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        people = self._collection(collection)[1]
        return [record for name, person in sorted(people.items()) for record in _records(name, person)]

    def import_faces(self, records: list[FaceRecord], *, replace: bool = False,
                     collection: str = DEFAULT_COLLECTION) -> int:
        def add_new(people: _People) -> int:
            if replace:
                people.clear()
            known = {face_id for person in people.values() for face_id in person["ids"]}
            added = 0
            for record in records:
                if record.face_id in known:
                    continue
                _append(people.setdefault(record.name, _new_person()), record)
                known.add(record.face_id)
                added += 1
            return added

        # A replace deletes: the backup must not keep what it removed.
        return self._update(collection, add_new, erase=replace)

    def collections(self) -> list[CollectionSummary]:
        collections = self._current().data["collections"]
        return [CollectionSummary(name, entry["people"], entry["faces"])
                for name, entry in sorted(collections.items())]

    def remove_collection(self, collection: str) -> int:
        def remove(people: _People) -> int:
            if not people:
                raise UnknownCollection(collection)
            count = sum(len(person["ids"]) for person in people.values())
            people.clear()
            return count

        return self._update(collection, remove, erase=True)

    def check(self) -> None:
        self._current()

    def close(self) -> None:
        self._cache = None

    def _collection(self, collection: str) -> tuple[_Contents, _People]:
        """The current contents and the collection's people. A collection this process has not served
        yet had its data dropped: the file is read again for it, and its data kept from then on."""
        contents = self._current()
        people = contents.collection(collection, self.path)
        if people is None:
            with self._thread_lock:
                self._served.add(collection)
                self._cache = None
            contents = self._current()
            people = contents.collection(collection, self.path)
        self._served.add(collection)
        return contents, people or {}

    def _current(self) -> _Contents:
        """The cached contents, reloaded first if another process replaced the file."""
        signature = self._signature()
        cache = self._cache
        if cache is not None and cache.signature == signature:
            return cache
        with self._thread_lock:
            if self._cache is None or self._cache.signature != self._signature():
                fresh = self._read().keep_unchanged(self._cache)
                self._cache = fresh.keeping_only(self._served)
                self._on_reload()
            return self._cache

    def _signature(self) -> _Signature | None:
        """Identity of the file's current version; ``os.replace`` always makes a new inode."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc.strerror}") from exc
        return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _read(self) -> _Contents:
        try:
            with open(self.path, "rb") as store_file:
                stat = os.fstat(store_file.fileno())
                raw = store_file.read()
        except FileNotFoundError:
            return _Contents(None, {"format": FORMAT_VERSION, "model": self._model_id, "collections": {}})
        except OSError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc.strerror}") from exc
        return _Contents((stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size), self._parse(raw))

    def _parse(self, raw: bytes) -> _Data:
        data = _unpickled(raw, self.path)
        if not isinstance(data, dict) or data.get("format") not in _READABLE_FORMATS:
            raise StoreError(f"the store {self.path} is not in a store format this version reads "
                             f"({', '.join(map(str, _READABLE_FORMATS))})")
        if data.get("model") != self._model_id:
            raise StoreError(f"the store {self.path} holds encodings made by models {data.get('model')!r}, "
                             f"not by this service's {self._model_id!r}; they cannot be mixed")
        if data["format"] < 3:
            _upgrade_to_format_3(data, self.path)
        collections = data.get("collections")
        if not isinstance(collections, dict) or not all(
                isinstance(name, str) and _valid_entry(entry) for name, entry in collections.items()):
            raise StoreError(f"the store {self.path} has a malformed collection record")
        return data

    def _update(self, collection: str, change: Callable[[_People], _T], *, erase: bool = False) -> _T:
        """Apply ``change`` to the latest people of ``collection`` and write them, all under the
        cross-process lock; the other collections' pickled data is written back as it was read.

        :param erase: the change deletes data, so the backup becomes the new version, not the old one.
        """
        with self._thread_lock, self._file_lock():
            contents = self._read()
            people = contents.collection(collection, self.path)
            result = change(people)
            _set_people(contents.data, collection, people)
            signature = self._write(contents.data, erase=erase)
            self._served.add(collection)
            fresh = _Contents(signature, contents.data, {collection: people}).keep_unchanged(self._cache)
            self._cache = fresh.keeping_only(self._served)
            return result

    def _upgrade_in_place(self) -> None:
        """Rewrite an older format as the current one, unless another process just did (the lock decides)."""
        with self._thread_lock, self._file_lock():
            contents = self._read()
            if contents.data["format"] != FORMAT_VERSION:  # the old file stays as the backup
                contents = _Contents(self._write(contents.data, erase=False), contents.data)
            self._cache = contents.keeping_only(self._served)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store lock {self._lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self._remove_orphans()
            yield
        finally:
            os.close(lock_fd)  # closing releases the flock

    def _write(self, data: _Data, *, erase: bool) -> _Signature:
        """Write ``data`` atomically and durably; the backup is the replaced file, or with ``erase`` the new one."""
        data["format"] = FORMAT_VERSION
        payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=self._tmp_prefix(), suffix=".tmp")
        except OSError as exc:
            raise StoreError(f"cannot write in the store directory {self.path.parent}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as tmp_file:
                tmp_file.write(payload)
                tmp_file.flush()
                os.fsync(tmp_file.fileno())
                stat = os.fstat(tmp_file.fileno())
            if erase:
                self._link_as_backup(pathlib.Path(tmp_name))
            elif self.path.exists():
                self._link_as_backup(self.path)
            os.replace(tmp_name, self.path)
            _fsync_directory(self.path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"no space left to write the store {self.path}; it is unchanged") from exc
            raise StoreError(f"cannot write the store {self.path}: {exc.strerror}") from exc
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

    def _remove_orphans(self) -> None:
        """Delete temporary files left by a writer that died; only lock holders write them."""
        for orphan in self.path.parent.glob(f"{self._tmp_prefix()}*.tmp"):
            with contextlib.suppress(OSError):
                orphan.unlink()


def _valid_person(name: Any, person: Any) -> bool:
    if not (isinstance(name, str) and isinstance(person, dict) and isinstance(person.get("ids"), list)):
        return False
    count = len(person["ids"])
    return (
        isinstance(person.get("encodings"), bytes)
        and len(person["encodings"]) == count * ENCODING_WIDTH * STORED_DTYPE.itemsize
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
    data["collections"] = {}
    _set_people(data, DEFAULT_COLLECTION, people)


def _unpickled(raw: bytes, where: pathlib.Path) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # any malformed pickle: the message says which file
        backup = where.with_name(where.name + ".bak")
        hint = f"; the previous version is in {backup}" if backup.is_file() and backup != where else ""
        raise StoreError(f"the store {where} is not a valid store file ({exc}){hint}") from exc


def _parse_people(blob: bytes, where: pathlib.Path) -> _People:
    return _check_people(_unpickled(blob, where), where)


def _check_people(people: Any, where: pathlib.Path) -> _People:
    if not isinstance(people, dict) or not all(_valid_person(name, person) for name, person in people.items()):
        raise StoreError(f"the store {where} has a malformed person record")
    return people


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("people"), int) and isinstance(entry.get("faces"), int)
            and isinstance(entry.get("data"), bytes))


def _stored(data: _Data, collection: str) -> bytes | None:
    """The collection's people as pickled in the file (None: no such collection, or its data not kept)."""
    entry = data["collections"].get(collection)
    return None if entry is None else entry["data"]


def _set_people(data: _Data, collection: str, people: _People) -> None:
    """Store ``people`` as the collection's entry; a collection without people is left out."""
    if not people:
        data["collections"].pop(collection, None)
        return
    data["collections"][collection] = {
        "people": len(people), "faces": sum(len(person["ids"]) for person in people.values()),
        "data": pickle.dumps(people, protocol=pickle.HIGHEST_PROTOCOL)}


def _new_person() -> _Person:
    return {"ids": [], "encodings": b"", "created": [], "external_ids": []}


def _person(people: _People, name: str) -> _Person:
    try:
        return people[name]
    except KeyError:
        raise UnknownPerson(name) from None


def _append(person: _Person, record: FaceRecord) -> None:
    person["ids"].append(record.face_id)
    person["encodings"] += np.asarray(record.encoding, dtype=STORED_DTYPE).reshape(ENCODING_WIDTH).tobytes()
    person["created"].append(None if record.created_at is None else _microseconds(record.created_at))
    person["external_ids"].append(record.external_id)


def _records(name: str, person: _Person) -> list[FaceRecord]:
    """The person's faces, oldest first (unknown times first), then by id: the order PostgreSQL gives."""
    rows = sorted(zip(person["created"], person["ids"], stored_matrix(person["encodings"]), person["external_ids"],
                      strict=True), key=lambda row: (row[0] is not None, row[0] or 0, row[1]))
    return [FaceRecord(face_id, name, encoding, None if created is None else _datetime(created), external_id)
            for created, face_id, encoding, external_id in rows]


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _microseconds(moment: datetime.datetime) -> int:
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1)


def _datetime(microseconds: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(microseconds=microseconds)


def _gallery_of(people: _People) -> Gallery:
    names = [name for name, person in people.items() for _ in person["ids"]]
    return Gallery.from_stored(names, b"".join(person["encodings"] for person in people.values()))


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make the rename durable: a directory entry lives in the directory's own blocks."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
