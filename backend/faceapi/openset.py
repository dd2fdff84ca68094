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
measured thresholds barely move from 100 to 2 000 people (0.780 to 0.784 for 1%).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from faceapi.matching import Candidate
from faceapi.matching import decide as plain_decision
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import Store

NEIGHBOURS = 4  # the nearest person and the next three: their distances are the spread
SPREAD_CAP = 0.65  # a spread wider than this (a small gallery's) counts as this

# The shares of strangers calibrated, and for each gallery size (people) the evidence each share reaches.
# Measured by `bench/openset.py --calibrate` on ../shared/lfw (2 856 people; mostly adult public figures of
# the early 2000s); each share is counted at 0.7 of itself, a margin for people unlike those measured.
SHARES = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
CALIBRATION: dict[int, tuple[float, ...]] = {
    1: (0.7511, 0.7941, 0.8205, 0.8737, 0.9125, 0.9570, 1.0176, 1.0688, 1.1271, 1.2271, 1.7689),
    2: (0.7581, 0.7905, 0.8227, 0.8647, 0.8974, 0.9318, 0.9835, 1.0267, 1.0741, 1.1558, 1.6571),
    3: (0.7427, 0.7778, 0.8026, 0.8409, 0.8752, 0.9112, 0.9589, 0.9998, 1.0456, 1.1207, 1.5988),
    5: (0.6902, 0.7209, 0.7535, 0.8018, 0.8379, 0.8794, 0.9299, 0.9700, 1.0146, 1.0861, 1.5254),
    10: (0.7113, 0.7414, 0.7612, 0.8035, 0.8321, 0.8621, 0.9054, 0.9390, 0.9769, 1.0384, 1.4275),
    20: (0.6813, 0.7097, 0.7346, 0.7673, 0.7990, 0.8287, 0.8707, 0.9049, 0.9420, 0.9985, 1.4262),
    50: (0.6494, 0.6741, 0.7014, 0.7399, 0.7691, 0.8009, 0.8423, 0.8747, 0.9073, 0.9569, 1.3067),
    100: (0.6802, 0.7019, 0.7242, 0.7543, 0.7795, 0.8047, 0.8371, 0.8639, 0.8925, 0.9348, 1.2481),
    200: (0.6950, 0.7149, 0.7353, 0.7631, 0.7842, 0.8081, 0.8384, 0.8618, 0.8860, 0.9223, 1.2175),
    500: (0.6949, 0.7142, 0.7340, 0.7581, 0.7837, 0.8066, 0.8337, 0.8561, 0.8790, 0.9119, 1.1127),
    1000: (0.6950, 0.7141, 0.7338, 0.7535, 0.7864, 0.8084, 0.8350, 0.8547, 0.8756, 0.9058, 1.0770),
    2000: (0.7049, 0.7224, 0.7405, 0.7649, 0.7840, 0.8027, 0.8315, 0.8511, 0.8713, 0.9002, 1.0855),
}


@dataclasses.dataclass(frozen=True)
class Decision:
    """A face's answer: the name or None, the distance to the nearest person, the evidence (`evidence`) and
    the estimated share of strangers a gallery of this size names on evidence as strong (None: plain rule)."""

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
    gallery_side = np.mean([_distance(nearest.encoding, other.encoding) for other in others] + missing)
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


def _rate_at(thresholds: tuple[float, ...], score: float) -> float:
    return math.exp(float(np.interp(score, thresholds, np.log(SHARES))))


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b))
