"""Open-set decisions: is the nearest enrolled person the face's own, or only a stranger's nearest?

With N people enrolled, a stranger's nearest distance is the least of N draws, so a fixed tolerance names
more strangers as N grows (on LFW, 0.6 named 4.5% of strangers at N = 10 and 88% at N = 1 000: docs/OPENSET.md).
What still tells a face's own person from a stranger's nearest at any N is the margin: a face's own person is
much nearer than the next people, a stranger's nearest only a little. So the evidence is the nearest distance
over the neighbourhood's spread, measured from both sides (`evidence`):

- the probe's side: its distance to the next nearest people (`NEIGHBOURS` - 1 of them);
- the gallery's side: the distance from the nearest person's face to those people's faces.

Each spread is capped at `SPREAD_CAP`: in a small gallery the next people are far and few, their distances say
little, and the evidence is then the nearest distance itself, which is what decides best there.

A stranger's evidence still depends on N, so `CALIBRATION` gives, for gallery sizes from 1 to 2 000 people,
the evidence that a given share of strangers reach (measured on half of Labeled Faces in the Wild by
`bench/openset.py --calibrate`). A face is named when the share of strangers who would be named with evidence
as strong, in a gallery of its size, is at most the rate the operator accepts (`FACEAPI_FALSE_MATCH_RATE`).
Above 2 000 people the largest measured size's thresholds hold: as N grows, nearest distances come from the
small-distance tail, where the ratio of neighbours' distances stops depending on N (if the share of faces
within d of a face goes as d^m, the nearest over the next is distributed alike for every N), and indeed the
measured thresholds barely move from 100 to 2 000 people (0.78-0.79 for 1%).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import Candidate
from faceapi.matching import Gallery
from faceapi.matching import decide as plain_decision
from faceapi.matching import face_distance
from faceapi.matching import nearest_people
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import Store

NEIGHBOURS = 4  # the nearest person and the next three: their distances are the spread
SPREAD_CAP = 0.65  # a spread wider than this (a small gallery's) counts as this

# The shares of strangers calibrated, and for each gallery size (people) the evidence each share reaches.
# Measured by `bench/openset.py --calibrate` on ../shared/lfw (2 856 people; mostly adult public figures of
# the early 2000s); each share is counted at 0.7 of itself, a margin for people unlike those measured.
SHARES = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_LOG_SHARES = np.log(SHARES)
CALIBRATION: dict[int, tuple[float, ...]] = {
    1: (0.7679, 0.8009, 0.8376, 0.8907, 0.9282, 0.9670, 1.0218, 1.0685, 1.1227, 1.2200, 1.8061),
    2: (0.7626, 0.7923, 0.8232, 0.8697, 0.9036, 0.9387, 0.9853, 1.0239, 1.0699, 1.1505, 1.6586),
    3: (0.7487, 0.7781, 0.8084, 0.8492, 0.8811, 0.9140, 0.9598, 0.9985, 1.0421, 1.1160, 1.6548),
    5: (0.7118, 0.7458, 0.7678, 0.8148, 0.8491, 0.8856, 0.9338, 0.9723, 1.0153, 1.0845, 1.5723),
    10: (0.6839, 0.7099, 0.7424, 0.7882, 0.8185, 0.8519, 0.9000, 0.9363, 0.9754, 1.0376, 1.4808),
    20: (0.6686, 0.6963, 0.7238, 0.7614, 0.7925, 0.8256, 0.8699, 0.9044, 0.9415, 0.9989, 1.3956),
    50: (0.6664, 0.6880, 0.7176, 0.7519, 0.7794, 0.8074, 0.8462, 0.8761, 0.9077, 0.9561, 1.2990),
    100: (0.6874, 0.7085, 0.7323, 0.7588, 0.7815, 0.8062, 0.8397, 0.8659, 0.8933, 0.9349, 1.2279),
    200: (0.6956, 0.7156, 0.7319, 0.7669, 0.7881, 0.8109, 0.8404, 0.8626, 0.8866, 0.9229, 1.2073),
    500: (0.6905, 0.7106, 0.7191, 0.7665, 0.7897, 0.8095, 0.8365, 0.8574, 0.8793, 0.9125, 1.1611),
    1000: (0.6950, 0.7141, 0.7338, 0.7535, 0.7864, 0.8084, 0.8350, 0.8547, 0.8756, 0.9058, 1.0770),
    2000: (0.7049, 0.7224, 0.7405, 0.7649, 0.7840, 0.8027, 0.8315, 0.8511, 0.8713, 0.9002, 1.0855),
}


@dataclasses.dataclass(frozen=True)
class Decision:
    """A face's answer: the name or None, the distance to the nearest person, the evidence (`evidence`) and
    the estimated share of strangers a gallery of this size names on evidence as strong (all None for an
    empty gallery)."""

    name: str | None
    distance: float | None
    evidence: float | None = None
    false_match_rate: float | None = None

    @property
    def matched(self) -> bool:
        return self.name is not None


def evidence(candidates: Sequence[Candidate]) -> float:
    """The nearest distance over the geometric mean of the probe's and the gallery's spread: lower is surer.

    ``candidates`` are the nearest people, nearest first (`NEIGHBOURS` of them when the gallery has as many);
    a spread with fewer people than that is filled with `SPREAD_CAP`.
    """
    nearest, others = candidates[0], candidates[1:NEIGHBOURS]
    missing = [SPREAD_CAP] * (NEIGHBOURS - 1 - len(others))
    probe_side = np.mean([other.distance for other in others] + missing)
    across = face_distance(np.array([other.encoding for other in others], dtype=np.float64).reshape(-1, ENCODING_WIDTH),
                           nearest.encoding)
    gallery_side = np.mean([*across, *missing])
    spread = math.sqrt(min(probe_side, SPREAD_CAP) * min(gallery_side, SPREAD_CAP))
    return nearest.distance / spread


def false_match_rate(score: float, people: int,
                     calibration: dict[int, tuple[float, ...]] | None = None) -> float:
    """The estimated share of strangers that a gallery of ``people`` names on evidence ``score`` or stronger:
    interpolated in the calibration (log of the share against evidence; between sizes, in log of the size),
    and clipped to the shares measured. ``calibration``: another than `CALIBRATION` (for measuring one)."""
    calibration = calibration or CALIBRATION
    sizes = sorted(calibration)
    people = min(max(people, sizes[0]), sizes[-1])
    upper = bisect.bisect_left(sizes, people)
    if sizes[upper] == people:
        return _rate_at(calibration[people], score)
    below, above = sizes[upper - 1], sizes[upper]
    weight = (math.log(people) - math.log(below)) / (math.log(above) - math.log(below))
    low, high = _rate_at(calibration[below], score), _rate_at(calibration[above], score)
    return math.exp((1 - weight) * math.log(low) + weight * math.log(high))


def decide(candidates: Sequence[Candidate], people: int, rate: float) -> Decision:
    """The open-set decision for a face whose nearest people (nearest first, `NEIGHBOURS` asked) are
    ``candidates``, in a gallery of ``people`` people: the nearest person when strangers reach evidence as
    strong at most at ``rate``, else unknown. No candidate (an empty gallery): unknown, nothing measured."""
    if not candidates:
        return Decision(None, None)
    score = evidence(candidates)
    estimated = false_match_rate(score, people)
    nearest = candidates[0]
    return Decision(nearest.name if estimated <= rate else None, nearest.distance, score, estimated)


def identify(store: Store, encodings: np.ndarray, rate: float, *, tolerance: float | None = None, count: int = 1,
             collection: str = DEFAULT_COLLECTION) -> list[tuple[Decision, list[Candidate]]]:
    """Search the collection for each row of ``encodings``: its decision, and its ``count`` nearest people.

    The open-set rule at ``rate``, or the plain rule of an explicit ``tolerance``; either way the decision
    carries the open-set estimate of its false-match rate.
    """
    found = store.nearest(encodings, max(count, NEIGHBOURS), collection=collection)
    people = store.people_count(collection=collection) if any(found) else 0
    answers = []
    for candidates in found:
        measured = decide(candidates, people, rate)
        if tolerance is not None:
            plain = plain_decision(candidates, tolerance)
            measured = dataclasses.replace(measured, name=plain.name)
        answers.append((measured, candidates[:count]))
    return answers


def match_faces(gallery: Gallery, encodings: np.ndarray, rate: float) -> list[Decision]:
    """The open-set decision for each row of ``encodings`` in a gallery held in this process (what `identify`
    does through a store that holds one)."""
    people = gallery.people_count
    return [decide(candidates, people, rate) for candidates in nearest_people(gallery, encodings, NEIGHBOURS)]


def _rate_at(thresholds: tuple[float, ...], score: float) -> float:
    return math.exp(float(np.interp(score, thresholds, _LOG_SHARES)))
