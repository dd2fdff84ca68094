"""Where enrollments live: one small interface, one module per backend.

Every backend meets the `Store` protocol; `open_store` picks one from the
settings. Stores hold names and float arrays only, never engine objects, and
raise instead of returning a failure flag: a store that loses data silently is
worse than one that fails loudly.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from faceapi.matching import Gallery


class StoreError(RuntimeError):
    """The store cannot be read or written (I/O failure, corrupt or foreign file)."""


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

    def check(self) -> None:
        """Raise `StoreError` unless the store is readable now (for readiness probes)."""

    def close(self) -> None:
        """Release files, connections and threads."""


def open_store(path: str, model_id: str) -> Store:
    """The store configured for this service: the pickle file at ``path``.

    :param model_id: identity of the models that make the encodings; a store
        written by other models is refused rather than mixed in.
    """
    from faceapi.store.pickle_file import PickleStore

    return PickleStore(path, model_id)
