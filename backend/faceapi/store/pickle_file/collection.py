"""One collection as a process holds it: per-face metadata in arrays indexed by matrix row, people by label;
the encodings stay in the collection's matrix file, mapped read-only and shared by the host's processes."""

from __future__ import annotations

import datetime
import mmap
import pathlib
import re
from typing import Any

import numpy as np

from faceapi.matching import Gallery
from faceapi.matching import grown
from faceapi.matching import squared_norms
from faceapi.matching import stored_matrix
from faceapi.store import FaceRecord
from faceapi.store import StoreError
from faceapi.store import UnknownPerson
from faceapi.store.pickle_file.formats import EPOCH
from faceapi.store.pickle_file.formats import ROW_BYTES
from faceapi.store.pickle_file.formats import Data
from faceapi.store.pickle_file.formats import datetime_of

NO_TIME = np.iinfo(np.int64).min  # a face enrolled before creation times were kept (format 1)
_HEX_ID = re.compile(r"[0-9a-f]{32}")  # the ids `faceapi.store.new_face_id` makes
Record = dict[str, Any]  # a journal record


class Collection:
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

    def apply(self, record: Record) -> None:
        """Apply one journal record (also how a writer applies its own)."""
        op = record["op"]
        if op == "add":
            self.add_rows(record["start"], record["names"], record["ids"], record["created"], record["external"])
        elif op == "remove":
            self._remove(record["rows"])
        elif op == "rename":
            self._rename(record["name"], record["to"])
        else:
            raise ValueError(f"unknown journal op {op!r}")
        self._gallery = None

    def add_rows(self, start: int, names: list[str], ids: list[str], created: list[int | None],
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
        self.created[start:end] = [NO_TIME if value is None else value for value in created]
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
            self.created[row] = NO_TIME
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
        self.created = grown(self.created, rows, NO_TIME)
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
        """The faces at ``rows`` (encodings copied out of the shared map), oldest first as `sort_key` says."""
        matrix = self.matrix_view(where)
        found = [FaceRecord(self.face_id(row), self.people[self.labels[row]], matrix[row].copy(),
                            None if self.created[row] == NO_TIME else datetime_of(int(self.created[row])),
                            self.external.get(row))
                 for row in rows.tolist()]
        return sorted(found, key=sort_key)

    def matrix_view(self, where: pathlib.Path) -> np.ndarray:
        """The committed rows of the matrix file, mapped read-only (the map is shared by the host's processes)."""
        if self._map is None or self._map[0] < self.rows:
            try:
                with open(matrix_path(where, self.matrix), "rb") as matrix_file:
                    mapped = mmap.mmap(matrix_file.fileno(), self.rows * ROW_BYTES, access=mmap.ACCESS_READ) \
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

    def entry(self) -> Data:
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
    def from_entry(cls, entry: Data) -> Collection:
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


def matrix_path(where: pathlib.Path, token: str) -> pathlib.Path:
    if not (isinstance(token, str) and len(token) == 32 and all(c in "0123456789abcdef" for c in token)):
        raise StoreError(f"the store {where} names a malformed matrix file")
    return where.with_name(f"{where.name}.{token}.f32")



def sort_key(record: FaceRecord) -> tuple[bool, datetime.datetime, str]:
    """Oldest first (unknown times first), then by id: the order PostgreSQL gives."""
    return (record.created_at is not None, record.created_at or EPOCH, record.face_id)


