"""Where enrollments live: one small interface, one module per backend.

Every backend meets the `Store` protocol; `open_store` picks one from the
settings. Stores hold names and float arrays only, never engine objects, and
raise instead of returning a failure flag: a store that loses data silently is
worse than one that fails loudly.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Protocol

import numpy as np

from faceapi.config import POSTGRES_URL_SCHEMES
from faceapi.matching import Gallery


class StoreError(RuntimeError):
    """The store cannot be read or written (I/O failure, corrupt or foreign file)."""


class StoreUnavailable(StoreError):
    """The store is out of reach for now (database down); retrying later may succeed."""


class StoreFull(StoreError):
    """The disk is full: nothing was written, the previous store is intact."""


class UnknownPerson(KeyError):
    """No person of that name is enrolled."""


@dataclasses.dataclass(frozen=True)
class PersonSummary:
    """A person and how many faces they have enrolled."""

    name: str
    face_count: int


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """What one `Store.add_faces` call did: the new face ids, in order, and the person's total."""

    name: str
    face_ids: tuple[str, ...]
    face_count: int


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as it moves between stores: its id, its person, its ``(128,)`` encoding."""

    face_id: str
    name: str
    encoding: np.ndarray


def new_face_id() -> str:
    """A new face's id: 32 random hex digits, unique across stores so that copies never collide."""
    return uuid.uuid4().hex


class Store(Protocol):
    """The contract every backend meets. All methods are safe from many threads and processes."""

    def add_faces(self, name: str, encodings: np.ndarray) -> Enrollment:
        """Add the ``(n, 128)`` ``encodings`` to person ``name``, creating the person if new.

        All faces are added or none is. :raises StoreError: nothing was added.
        """

    def remove_person(self, name: str) -> int:
        """Remove person ``name`` and all their faces; return how many faces went.

        :raises UnknownPerson: no such person. :raises StoreError: nothing was removed.
        """

    def people(self) -> list[PersonSummary]:
        """Every enrolled person, sorted by name."""

    def gallery(self) -> Gallery:
        """Every enrolled face as a matching matrix, including every other process's latest writes.

        Cheap when nothing changed: implementations cache and check a change marker.
        """

    def faces(self) -> list[FaceRecord]:
        """Every enrolled face, for export, ordered by person."""

    def import_faces(self, records: list[FaceRecord]) -> int:
        """Add ``records`` in one step, skipping face ids already present; return how many were new."""

    def check(self) -> None:
        """Raise `StoreError` unless the store is readable now (for readiness probes)."""

    def close(self) -> None:
        """Release files, connections and threads."""


def open_store(location: str, model_id: str, *, pool_size: int = 4) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, or the path of a pickle file.

    :param model_id: identity of the models that make the encodings; encodings of
        other models are refused (pickle) or left out (PostgreSQL), never mixed in.
    :param pool_size: database connections per process (one per request thread).
    """
    if location.startswith(POSTGRES_URL_SCHEMES):
        from faceapi.store.postgres import PostgresStore

        return PostgresStore(location, model_id, pool_size)
    from faceapi.store.pickle_file import PickleStore

    return PickleStore(location, model_id)
