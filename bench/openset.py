"""Open-set identification on ../shared/lfw: how often a stranger gets a name, and an enrolled person not theirs.

Usage: .venv/bin/python bench/openset.py [--sizes 10 100 1000 2000] [--photos 1 2 3] [--splits 8]
                                         [--plot docs/openset-det.png] [--calibrate] [--holdout] [--verify]
                                         [--spread DRAWS]

The NIST FRVT 1:N measures, from the encodings `../shared/lfw/encodings.npz` holds (the service's `/encode`
of each photo's centre face): N people are enrolled from one photo each (or ``--photos`` of them); a mated
probe is another photo of an enrolled person, a stranger one photo of a person not enrolled. FPIR is the
share of strangers given a name; FNIR the share of mated probes not given their own name (unknown, or
someone else's). Each N is averaged over ``--splits`` random draws of who is enrolled. Every search and
decision is the service's own code (`faceapi.matching.nearest_people`, `faceapi.openset`), side by side:

- today's rule before issue 29: the nearest person if within 0.6 (still the rule of an explicit ``tolerance``);
- the open-set rule at FACEAPI_FALSE_MATCH_RATE's default, 1%;
- FNIR where each rule's threshold is set on these strangers for FPIR 1% (an oracle: how far a rule can go).

``--verify`` measures /verify's false accepts and rejects on pairs; ``--spread`` how FPIR varies between
galleries of one size. ``--calibrate`` prints `faceapi.openset.CALIBRATION` measured on every person here.
``--holdout`` calibrates on half of the people and measures on the other half, as the project is measured on
people it never saw. ``--plot`` draws FNIR against FPIR (a DET curve per N, one photo a person). LFW's
people are mostly adult public figures of the early 2000s (its README): a rate here is a fact about them and
this model, not a promise for a school.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from collections import defaultdict

import numpy as np

from faceapi import openset
from faceapi.matching import Gallery
from faceapi.matching import nearest_people

LFW = pathlib.Path(__file__).resolve().parents[2] / "shared/lfw/encodings.npz"
TOLERANCE = 0.6  # the plain rule's default
RATE = 0.01  # FACEAPI_FALSE_MATCH_RATE's default
CALIBRATION_SIZES = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
MARGIN = 0.7  # each share is counted at 0.7 of itself (faceapi.openset.CALIBRATION)
MOST_STRANGERS = 3000  # a split asks at most this many strangers


@dataclasses.dataclass
class Outcomes:
    """Per probe of some splits: nearest distance, evidence, whether the nearest is the probe's own person."""

    size: int
    distance: np.ndarray
    evidence: np.ndarray
    right: np.ndarray
    mated: np.ndarray

    def fpir(self, named: np.ndarray) -> float:
        return float(np.mean(named[~self.mated]))

    def fnir(self, named: np.ndarray) -> float:
        return float(np.mean(~(named & self.right)[self.mated]))

    def rates(self, calibration: dict) -> np.ndarray:
        return np.array([openset.false_match_rate(score, self.size, calibration) for score in self.evidence])


def people_photos(source: pathlib.Path = LFW) -> dict[str, np.ndarray]:
    """Each person's encodings (photos where a face was found), by name."""
    data = np.load(source)
    photos: dict[str, list[np.ndarray]] = defaultdict(list)
    for path, found, encoding in zip(data["files"], data["found"], data["encodings"], strict=True):
        if found:
            photos[pathlib.PurePosixPath(str(path)).parts[0]].append(encoding.astype(np.float64))
    return {name: np.stack(encodings) for name, encodings in photos.items()}


def one_split(photos: dict[str, np.ndarray], size: int, per_person: int, rng: np.random.Generator,
              most_strangers: int = MOST_STRANGERS) -> Outcomes:
    """Enroll ``size`` people drawn from ``photos`` (``per_person`` photos each), search (some of) the rest."""
    names = sorted(photos)
    order = rng.permutation(len(names))
    enrolled, strangers = [names[i] for i in order[:size]], [names[i] for i in order[size:]][:most_strangers]
    gallery_names, gallery, probes, truth = [], [], [], []
    for name in enrolled:
        faces = photos[name][rng.permutation(len(photos[name]))]
        gallery_names += [name] * len(faces[:per_person])
        gallery.append(faces[:per_person])
        if len(faces) > per_person:
            probes.append(faces[per_person])
            truth.append(name)
    for name in strangers:
        probes.append(photos[name][rng.integers(len(photos[name]))])
        truth.append(None)
    found = nearest_people(Gallery.build(gallery_names, np.concatenate(gallery)), np.stack(probes), openset.NEIGHBOURS)
    return Outcomes(size, np.array([c[0].distance for c in found]), np.array([openset.evidence(c) for c in found]),
                    np.array([c[0].name == who for c, who in zip(found, truth, strict=True)]),
                    np.array([who is not None for who in truth]))


def outcomes(photos: dict[str, np.ndarray], size: int, per_person: int, splits: int, seed: int,
             most_strangers: int = MOST_STRANGERS, mixed: bool = False) -> Outcomes | None:
    """``splits`` splits of ``size`` enrolled people, pooled; None when too few people have the photos.

    :param mixed: draw from everyone, each enrolled with ``per_person`` photos or as many as they have (so a
        gallery can be larger than the people with that many); mated probes come from those with more.
    """
    eligible = {name: faces for name, faces in photos.items() if mixed or len(faces) >= per_person}
    if size >= len(eligible):
        return None
    rng = np.random.default_rng(seed)
    parts = [one_split(eligible, size, per_person, rng, most_strangers) for _ in range(splits)]
    return Outcomes(size, *(np.concatenate([getattr(p, f) for p in parts]) for f in ("distance", "evidence", "right",
                                                                                     "mated")))


def calibration(photos: dict[str, np.ndarray], splits: int) -> dict[int, tuple[float, ...]]:
    """For each calibration size, the evidence each share of strangers reaches (counted at `MARGIN` of it)."""
    table = {}
    for size in CALIBRATION_SIZES:
        # Which few people are enrolled matters most in a small gallery (one who looks like many strangers
        # names many): smaller sizes are drawn 20 and 5 times as often, each searched by fewer strangers.
        small, middle = size < 100, size < 1000
        found = outcomes(photos, size, 1, splits * (20 if small else 5 if middle else 1), seed=size,
                         most_strangers=600 if small else 1500 if middle else MOST_STRANGERS)
        if found is None:
            continue
        strangers = found.evidence[~found.mated]
        shares = np.minimum(1.0, np.array(openset.SHARES) * MARGIN)
        thresholds = np.quantile(strangers, shares)
        thresholds[-1] = strangers.max()
        # Where fewer than 50 strangers fall below a share, the share is extrapolated: it follows a power of the
        # evidence (the tail of a distance distribution near its least), fitted on the shares up to 20% that
        # have the samples.
        counted = shares * len(strangers) >= 50
        fitted = counted & (shares <= 0.2 * MARGIN)
        slope, intercept = np.polyfit(np.log(shares[fitted]), np.log(thresholds[fitted]), 1)
        thresholds[~counted] = np.exp(intercept + slope * np.log(shares[~counted]))
        thresholds = np.maximum.accumulate(thresholds) + np.arange(len(thresholds)) * 1e-6  # strictly rising
        table[size] = tuple(round(float(t), 4) for t in thresholds)
    return table


def print_calibration(table: dict[int, tuple[float, ...]]) -> None:
    print("CALIBRATION: dict[int, tuple[float, ...]] = {")
    for size, thresholds in table.items():
        print(f"    {size}: ({', '.join(f'{t:.4f}' for t in thresholds)}),")
    print("}")


def report(photos: dict[str, np.ndarray], table: dict, sizes: list[int], photo_counts: list[int], splits: int,
           title: str) -> dict[int, Outcomes]:
    """The side-by-side table; returns the one-photo outcomes by size, for the plot."""
    print(f"\n{title}\n")
    print("| photos a person | N | mated probes | strangers | FPIR at 0.6 | FNIR at 0.6 | FPIR open set (1%) "
          "| FNIR open set | FNIR at FPIR 1%: distance / open set (oracle) |")
    print("|---|---|---|---|---|---|---|---|---|")
    curves = {}
    for per_person in photo_counts:
        for size in sizes:
            seed, photos_column = size * 10 + per_person + 7, per_person
            found = outcomes(photos, size, per_person, splits, seed)
            if found is None and per_person > 1:
                found = outcomes(photos, size, per_person, splits, seed, mixed=True)
                photos_column = f"{per_person} (others all they have)"
            if found is None:
                continue
            if per_person == 1:
                curves[size] = found
            plain = found.distance <= TOLERANCE
            named = found.rates(table) <= RATE
            oracle = [found.fnir(score <= np.quantile(score[~found.mated], 0.01))
                      for score in (found.distance, found.evidence)]
            print(f"| {photos_column} | {size} | {found.mated.sum()} | {(~found.mated).sum()} "
                  f"| {found.fpir(plain):.1%} | {found.fnir(plain):.1%} | {found.fpir(named):.1%} "
                  f"| {found.fnir(named):.1%} | {oracle[0]:.1%} / {oracle[1]:.1%} |", flush=True)
    return curves


def spread(photos: dict[str, np.ndarray], sizes: list[int], draws: int) -> None:
    """How FPIR at the default varies from one gallery to another of the same size (one photo a person)."""
    print(f"\nFPIR at the default over {draws} random galleries each:\n")
    print("| N | mean | median | one gallery in ten above | worst |")
    print("|---|---|---|---|---|")
    for size in sizes:
        rng = np.random.default_rng(size + 12345)
        rates = []
        for _ in range(draws):
            found = one_split(photos, size, 1, rng)
            rates.append(found.fpir(found.rates(openset.CALIBRATION) <= RATE))
        print(f"| {size} | {np.mean(rates):.2%} | {np.median(rates):.2%} | {np.quantile(rates, 0.9):.2%} "
              f"| {np.max(rates):.2%} |", flush=True)


def verification(photos: dict[str, np.ndarray], seed: int = 0) -> None:
    """/verify's 1:1 decision (distance at most the tolerance) on pairs: every pair of one person's photos (at
    most 10 a person, so that the few people with hundreds of photos do not outweigh the rest) and 200 000
    pairs of two different people."""
    rng = np.random.default_rng(seed)
    mated = []
    for faces in photos.values():
        pairs = [(i, j) for i in range(len(faces)) for j in range(i + 1, len(faces))]
        for k in rng.permutation(len(pairs))[:10]:
            mated.append(np.linalg.norm(faces[pairs[k][0]] - faces[pairs[k][1]]))
    names = sorted(photos)
    first, second = rng.integers(len(names), size=(2, 200_000))
    different = first != second
    impostors = [np.linalg.norm(photos[names[a]][rng.integers(len(photos[names[a]]))]
                                - photos[names[b]][rng.integers(len(photos[names[b]]))])
                 for a, b in zip(first[different], second[different], strict=True)]
    mated_distances, impostor_distances = np.array(mated), np.array(impostors)
    print(f"\n/verify on {len(mated_distances)} pairs of one person and {len(impostor_distances)} of two people:\n")
    print("| tolerance | false accepts (two people, match) | false rejects (one person, no match) |")
    print("|---|---|---|")
    for tolerance in (0.5, 0.55, 0.6, 0.65):
        print(f"| {tolerance} | {np.mean(impostor_distances <= tolerance):.2%} "
              f"| {np.mean(mated_distances > tolerance):.2%} |")


def plot(curves: dict[int, Outcomes], path: pathlib.Path) -> None:
    """DET curves (FNIR against FPIR, log axes) of both rules, a colour per N, one photo a person; each
    rule's default marked on its curve."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 5), dpi=100)
    for index, (size, found) in enumerate(sorted(curves.items())):
        colour = f"C{index}"
        for score, style, rule in ((found.distance, "--", "distance (tolerance)"), (found.evidence, "-", "open set")):
            thresholds = np.unique(np.quantile(score[~found.mated], np.geomspace(1e-3, 1, 60)))
            fpir = [np.mean(score[~found.mated] <= t) for t in thresholds]
            fnir = [found.fnir(score <= t) for t in thresholds]
            axes.plot(fpir, fnir, style, color=colour, label=f"N = {size}, {rule}")
        named, plain = found.rates(openset.CALIBRATION) <= RATE, found.distance <= TOLERANCE
        axes.plot([found.fpir(named)], [found.fnir(named)], "o", color=colour)
        axes.plot([found.fpir(plain)], [found.fnir(plain)], "x", color=colour)
    axes.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(5e-3, 1), xlabel="FPIR (strangers given a name)",
             ylabel="FNIR (enrolled people not given their own name)",
             title="Open-set identification on half of LFW, one photo a person\n"
                   "dots: the default (FACEAPI_FALSE_MATCH_RATE 1%); crosses: tolerance 0.6")
    axes.axvline(RATE, color="grey", linewidth=0.5)
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 2000])
    parser.add_argument("--photos", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--splits", type=int, default=8)
    parser.add_argument("--plot", type=pathlib.Path)
    parser.add_argument("--calibrate", action="store_true", help="print CALIBRATION measured on every person here")
    parser.add_argument("--holdout", action="store_true", help="calibrate on half the people, measure the other")
    parser.add_argument("--verify", action="store_true", help="measure /verify's false accepts and rejects")
    parser.add_argument("--spread", type=int, metavar="DRAWS", help="FPIR of each of DRAWS galleries per size")
    parser.add_argument("--encodings", type=pathlib.Path, default=LFW,
                        help="another file of encodings laid out as it is (bench/lfw_encodings.py)")
    args = parser.parse_args()
    photos = people_photos(args.encodings)
    print(f"{len(photos)} people, {sum(len(p) for p in photos.values())} photos with a face")
    if args.verify:
        verification(photos)
        return
    if args.spread:
        spread(photos, args.sizes, args.spread)
        return
    if args.calibrate:
        print_calibration(calibration(photos, args.splits))
        return
    if args.holdout:
        names = sorted(photos)
        halves = [names[i::2] for i in (0, 1)]
        for fit, measure in (halves, halves[::-1]):
            table = calibration({name: photos[name] for name in fit}, args.splits)
            report({name: photos[name] for name in measure}, table, [n for n in args.sizes if n <= 1000],
                   args.photos, args.splits, f"Calibrated on {len(fit)} people, measured on {len(measure)} others:")
        return
    curves = report(photos, openset.CALIBRATION, args.sizes, args.photos, args.splits,
                    "The shipped calibration (measured on these same people):")
    if args.plot:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
