"""1:N matching of face encodings against a gallery of known faces (numpy only).

The gallery is one contiguous ``(n, 128)`` matrix, so every face of a request is
compared with every known face in one matrix product, and each face gets its nearest
distinct people (`nearest_people`). Whether the nearest is the face's own person is
`faceapi.openset`'s decision; `decide` here is the plain rule of an explicit tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

ENCODING_WIDTH = 128
# How stores keep encodings: dlib computes in float32, so little-endian float32 loses nothing.
STORED_DTYPE = np.dtype("<f4")


def stored_matrix(blob: bytes) -> np.ndarray:
    """Encodings as the stores keep them (each row's `STORED_DTYPE` bytes, concatenated) as an ``(n, 128)``
    read-only array."""
    return np.frombuffer(blob, dtype=STORED_DTYPE).reshape(-1, ENCODING_WIDTH)


@dataclasses.dataclass(frozen=True)
class Gallery:
    """The known faces: row ``i`` of ``encodings`` belongs to ``people[labels[i]]``.

    Encodings are float32: dlib computes them in float32, so nothing is lost, and the matrix takes half
    the memory. The matrix may be a read-only view of a file that every worker of the host maps (the
    pickle store), so it can hold rows of removed faces: their label is -1 and their squared norm
    infinite, so they are never nearest. The pickle store also shares its arrays with the gallery
    rather than copying them: a row may be removed, or relabelled to a person appended to ``people``,
    while a match reads it, which gives the answer from just before or just after that write.
    """

    encodings: np.ndarray
    squared_norms: np.ndarray
    labels: np.ndarray
    people: Sequence[str]
    size: int  # rows that are not removed

    @classmethod
    def build(cls, names: list[str] | tuple[str, ...], encodings: np.ndarray) -> Gallery:
        """A gallery of ``names`` and their ``(n, 128)`` encodings."""
        matrix = np.ascontiguousarray(encodings, dtype=np.float32).reshape(len(names), ENCODING_WIDTH)
        people = tuple(dict.fromkeys(names))
        index = {name: label for label, name in enumerate(people)}
        labels = np.fromiter((index[name] for name in names), dtype=np.int32, count=len(names))
        return cls(matrix, squared_norms(matrix), labels, people, len(names))

    @classmethod
    def from_stored(cls, names: list[str], blob: bytes) -> Gallery:
        """A gallery from encodings as the stores keep them: each row's `STORED_DTYPE` bytes, concatenated."""
        return cls.build(names, stored_matrix(blob))

    @classmethod
    def empty(cls) -> Gallery:
        """A gallery with no known face."""
        return cls.build((), np.empty((0, ENCODING_WIDTH), dtype=np.float32))

    @property
    def people_count(self) -> int:
        """How many people have a face that is not removed: the N an open-set decision is calibrated to."""
        labels = self.labels[:len(self.encodings)]
        return int(np.count_nonzero(np.bincount(labels[labels >= 0], minlength=1)))

    @property
    def names(self) -> tuple[str, ...]:
        """The name of each face that is not removed, in row order."""
        return tuple(self.people[label] for label in self.labels.tolist() if label >= 0)

    def __len__(self) -> int:
        return self.size


def grown(array: np.ndarray, rows: int, fill: Any = 0) -> np.ndarray:
    """``array`` with room for ``rows`` rows: itself if it has it, else a copy a quarter larger (appends then
    cost amortised constant time, and at most a quarter is spare), the new rows set to ``fill``. For
    galleries that take appended faces in place."""
    if len(array) >= rows:
        return array
    larger = np.full((max(rows, len(array) + len(array) // 4, 16), *array.shape[1:]), fill, dtype=array.dtype)
    larger[:len(array)] = array
    return larger


def squared_norms(matrix: np.ndarray) -> np.ndarray:
    """Each row's squared length, in float64 (the term of each distance that does not depend on the query)."""
    return np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Match:
    """The decision for one face: the person's name when matched, else None.

    ``distance`` is the distance to the nearest known face (None for an empty gallery).
    """

    name: str | None
    distance: float | None

    @property
    def matched(self) -> bool:
        return self.name is not None


def face_distance(known_encodings: np.ndarray, face_encoding: np.ndarray) -> np.ndarray:
    """Euclidean distance from ``face_encoding`` to each row of ``known_encodings`` (empty in, empty out)."""
    if len(known_encodings) == 0:
        return np.empty(0)
    return np.linalg.norm(np.asarray(known_encodings) - face_encoding, axis=1)


def distance_matrix(gallery: Gallery, encodings: np.ndarray) -> np.ndarray:
    """``(len(encodings), len(gallery))`` Euclidean distances, via ``|a|^2 + |b|^2 - 2ab``."""
    queries = np.asarray(encodings, dtype=np.float64).reshape(-1, gallery.encodings.shape[1])
    squared = (
        np.einsum("ij,ij->i", queries, queries)[:, None]
        + gallery.squared_norms[None, :]
        - 2.0 * (queries.astype(np.float32) @ gallery.encodings.T)
    )
    return np.sqrt(np.maximum(squared, 0.0))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An enrolled person, the distance from a face to that person's nearest enrolled face, and that face's
    encoding (an open-set decision measures how far the nearest person's face is from the next people's)."""

    name: str
    distance: float
    encoding: np.ndarray = dataclasses.field(compare=False, repr=False)


def decide(candidates: list[Candidate], tolerance: float) -> Match:
    """The plain rule for a face whose nearest people are ``candidates`` (nearest first): the nearest, when
    within ``tolerance``, else unknown. No candidate (an empty gallery): unknown, with no distance.
    `faceapi.openset` decides by default; this rule is the explicit ``tolerance``'s."""
    if not candidates:
        return Match(None, None)
    nearest = candidates[0]
    return Match(nearest.name if nearest.distance <= tolerance else None, nearest.distance)


def nearest_people(gallery: Gallery, encodings: np.ndarray, count: int) -> list[list[Candidate]]:
    """For each row of ``encodings``, the ``count`` nearest distinct people, nearest first.

    A person's distance is that of their nearest enrolled face, so a person with many
    faces takes one place, not many. Distances are exact float64, recomputed for the
    faces the float32 product ranks first. Only the nearest faces are sorted (a window
    that widens until it holds ``count`` people), so one nearest face costs one pass.
    """
    if len(encodings) == 0 or len(gallery) == 0:
        return [[] for _ in range(len(encodings))]
    queries = np.asarray(encodings, dtype=np.float64)
    return [_nearest_of(gallery, row, queries[index], count)
            for index, row in enumerate(distance_matrix(gallery, queries))]


def _nearest_of(gallery: Gallery, distances: np.ndarray, query: np.ndarray, count: int) -> list[Candidate]:
    window = 1 if count == 1 else min(len(distances), 8 * count)
    while True:
        if window == 1:
            order = np.array([distances.argmin()])
        elif window < len(distances):
            closest = np.argpartition(distances, window - 1)[:window]
            order = closest[np.argsort(distances[closest], kind="stable")]
        else:
            order = np.argsort(distances, kind="stable")
        best: dict[str, tuple[float, int]] = {}
        for column in order:
            if distances[column] == np.inf:  # removed rows come last: every other row was seen
                window = len(distances)
                break
            label = gallery.labels[column]
            if label < 0:  # removed while this match ran
                continue
            name = gallery.people[label]
            if name not in best:
                best[name] = (_exact_distance(gallery, column, query), column)
                if len(best) == count:
                    break
        if len(best) == count or window == len(distances):
            return [Candidate(name, distance, gallery.encodings[column].copy())
                    for name, (distance, column) in sorted(best.items(), key=lambda item: item[1][0])]
        window = min(len(distances), window * 4)


def _exact_distance(gallery: Gallery, column: int, query: np.ndarray) -> float:
    """The float32 product ranks; the reported distance is recomputed exactly in float64."""
    return float(np.linalg.norm(gallery.encodings[column].astype(np.float64) - query))
