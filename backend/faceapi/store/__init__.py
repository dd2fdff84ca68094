"""Where enrollments live: one small interface, one module per backend.

Every backend meets the `Store` protocol; `open_store` picks one from the
settings. Stores hold names and float arrays only, never engine objects, and
raise instead of returning a failure flag: a store that loses data silently is
worse than one that fails loudly.

Every enrollment belongs to one collection (`faceapi.scopes`): each method takes
``collection``, `DEFAULT_COLLECTION` when not given. People's names and face ids are
unique within a collection, and nothing of one collection shows through another.
A collection exists while it has people: enrolling creates it, removing its last
person or `Store.remove_collection` ends it.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from faceapi.config import POSTGRES_URL_SCHEMES
from faceapi.matching import Candidate
from faceapi.matching import Gallery
from faceapi.scopes import DEFAULT_COLLECTION


class StoreError(RuntimeError):
    """The store cannot be read or written (I/O failure, corrupt or foreign file)."""


class StoreUnavailable(StoreError):
    """The store is out of reach for now (database down); retrying later may succeed."""


class StoreFull(StoreError):
    """The disk is full: nothing was written, the previous store is intact."""


class UnknownPerson(KeyError):
    """No person of that name is enrolled."""


class UnknownCollection(KeyError):
    """No collection of that name has people."""


class UnknownFace(KeyError):
    """The person has no face of that id."""


class NameTaken(ValueError):
    """A rename would give a person the name of another enrolled person."""


@dataclasses.dataclass(frozen=True)
class PersonSummary:
    """A person and how many faces they have enrolled."""

    name: str
    face_count: int


@dataclasses.dataclass(frozen=True)
class CollectionSummary:
    """A collection and how many people and faces it holds."""

    name: str
    person_count: int
    face_count: int


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """What one `Store.add_faces` call did: the new face ids, in order, and the person's total."""

    name: str
    face_ids: tuple[str, ...]
    face_count: int


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as it is listed, exported and imported.

    ``created_at`` is None for faces enrolled before creation times were kept (pickle format 1);
    ``external_id`` is the client's own reference, given at enrollment, or None.
    """

    face_id: str
    name: str
    encoding: np.ndarray
    created_at: datetime.datetime | None = None
    external_id: str | None = None


def new_face_id() -> str:
    """A new face's id: 32 random hex digits, unique across stores so that copies never collide."""
    return uuid.uuid4().hex


def utc_now() -> datetime.datetime:
    """Creation time of a face: timezone-aware UTC, to the microsecond (what PostgreSQL keeps)."""
    return datetime.datetime.now(datetime.UTC)


class Store(Protocol):
    """The contract every backend meets. All methods are safe from many threads and processes."""

    def add_faces(self, name: str, encodings: np.ndarray, external_ids: Sequence[str | None] | None = None,
                  *, collection: str = DEFAULT_COLLECTION) -> Enrollment:
        """Add the ``(n, 128)`` ``encodings`` to person ``name``, creating the person if new.

        :param external_ids: the client's reference for each face, or None.
        All faces are added or none is. :raises StoreError: nothing was added.
        """

    def remove_person(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        """Remove person ``name`` and all their faces; return how many faces went.

        :raises UnknownPerson: no such person. :raises StoreError: nothing was removed.
        """

    def remove_face(self, name: str, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> int:
        """Remove one face of person ``name``; return how many faces the person has left.

        A person whose last face goes is removed: a person without a face cannot be recognised.
        :raises UnknownPerson: no such person. :raises UnknownFace: the person has no such face.
        """

    def rename_person(self, name: str, new_name: str, *, merge: bool = False,
                      collection: str = DEFAULT_COLLECTION) -> int:
        """Give person ``name`` and their faces the name ``new_name``; return the faces it now has.

        :param merge: if ``new_name`` is enrolled, add these faces to that person.
        :raises UnknownPerson: no person ``name``. :raises NameTaken: ``new_name`` is enrolled and not ``merge``.
        """

    def people(self, limit: int | None = None, after: str | None = None, *,
               collection: str = DEFAULT_COLLECTION) -> list[PersonSummary]:
        """Enrolled people sorted by name (code point order): at most ``limit``, names after ``after`` only."""

    def person_faces(self, name: str, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        """The faces of person ``name``, oldest first. :raises UnknownPerson: no such person."""

    def gallery(self, *, collection: str = DEFAULT_COLLECTION) -> Gallery:
        """Every face of the collection as a matching matrix, including every other process's latest writes.

        Built on a process's first request for that collection and kept; cheap when nothing changed:
        implementations check a change marker. A write elsewhere does not rebuild it.
        """

    def nearest(self, encodings: np.ndarray, count: int, *,
                collection: str = DEFAULT_COLLECTION) -> list[list[Candidate]]:
        """For each row of ``encodings``, the ``count`` nearest distinct people of the collection, nearest
        first (`faceapi.matching.nearest_people`): what a recognition decides from.

        In this process from `gallery`, or in the database (pgvector), where the process holds no gallery.
        """

    def people_count(self, *, collection: str = DEFAULT_COLLECTION) -> int:
        """How many people of the collection have a face of this service's models: the gallery size an open-set
        decision is calibrated to (`faceapi.openset`). May lag a write made meanwhile by another process."""

    def faces(self, *, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        """Every face of the collection, for export, ordered by person and then as `person_faces` orders them."""

    def import_faces(self, records: list[FaceRecord], *, replace: bool = False,
                     collection: str = DEFAULT_COLLECTION) -> int:
        """Add ``records`` in one step, skipping face ids already in the collection; return how many were new.

        :param replace: first remove every person of the collection, in the same step: it then holds
            exactly ``records``. Readers see the old contents or the new, never a mixture.
        """

    def collections(self) -> list[CollectionSummary]:
        """Every collection that has people, by name (code point order)."""

    def remove_collection(self, collection: str) -> int:
        """Remove a collection with all its people and faces; return how many faces went.

        :raises UnknownCollection: it has no people.
        """

    def check(self) -> None:
        """Raise `StoreError` unless the store is readable now (for readiness probes)."""

    def close(self) -> None:
        """Release files, connections and threads."""


def open_store(location: str, model_id: str, *, pool_size: int = 4,
               on_reload: Callable[[], None] | None = None, pgvector: str = "auto") -> Store:
    """The store at ``location``: a ``postgresql://`` URL, or the path of a pickle file.

    :param model_id: identity of the models that make the encodings; encodings of
        other models are refused (pickle) or left out (PostgreSQL), never mixed in.
    :param pool_size: database connections per process (one per request thread).
    :param on_reload: called each time this process reads the store afresh (its first read, or after
        another process changed it: the pickle file, a PostgreSQL collection's faces); for metrics.
    :param pgvector: whether PostgreSQL matches in the database (`faceapi.store.postgres.enable_vector`).
    """
    reloaded = on_reload or _nothing
    if location.startswith(POSTGRES_URL_SCHEMES):
        from faceapi.store.postgres import PostgresStore

        return PostgresStore(location, model_id, pool_size, on_reload=reloaded, pgvector=pgvector)
    from faceapi.store.pickle_file import PickleStore

    return PickleStore(location, model_id, on_reload=reloaded)


def _nothing() -> None:
    pass
