"""Open-set identification on ../shared/lfw: how often a stranger gets a name, and an enrolled person not theirs.

Usage: .venv/bin/python bench/openset.py [--sizes 10 100 1000 2000] [--photos 1 3] [--splits 10]

The NIST FRVT 1:N measures, from the encodings `../shared/lfw/encodings.npz` holds (the service's `/encode`
of each photo's centre face): N people are enrolled from one photo each (or ``--photos`` of them); a mated
probe is another photo of an enrolled person, a stranger one photo of a person not enrolled. FPIR is the
share of strangers given a name; FNIR the share of mated probes not given their own name (unknown, or
someone else's). Each N is averaged over ``--splits`` random draws of who is enrolled. The rule measured is
today's: the nearest enrolled person, if within the tolerance (0.6). Also the tolerance that brings FPIR to
1% at each N, and FNIR there. LFW's people are mostly adult public figures of the early 2000s (its README):
a rate here is a fact about them and this model, not a promise for a school.
"""

from __future__ import annotations

import argparse
import pathlib
from collections import defaultdict

import numpy as np

LFW = pathlib.Path(__file__).resolve().parents[2] / "shared/lfw/encodings.npz"
TOLERANCE = 0.6


def people_photos() -> dict[str, np.ndarray]:
    """Each person's encodings (photos where a face was found), by name."""
    data = np.load(LFW)
    photos: dict[str, list[np.ndarray]] = defaultdict(list)
    for path, found, encoding in zip(data["files"], data["found"], data["encodings"], strict=True):
        if found:
            photos[pathlib.PurePosixPath(str(path)).parts[0]].append(encoding.astype(np.float64))
    return {name: np.stack(encodings) for name, encodings in photos.items()}


def nearest_distances(gallery: np.ndarray, labels: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each probe, the nearest enrolled person's label and distance (a person's nearest face)."""
    if len(probes) == 0:
        return np.empty(0, labels.dtype), np.empty(0)
    squared = (probes ** 2).sum(axis=1)[:, None] + (gallery ** 2).sum(axis=1)[None, :] - 2 * probes @ gallery.T
    distances = np.sqrt(np.maximum(squared, 0))
    best = distances.argmin(axis=1)
    return labels[best], distances[np.arange(len(probes)), best]


def one_split(photos: dict[str, np.ndarray], size: int, per_person: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mated nearest distances with whether the nearest is the right person, stranger nearest distances)."""
    names = sorted(photos)
    order = rng.permutation(len(names))
    enrolled = [names[i] for i in order[:size]]
    strangers = [names[i] for i in order[size:]]
    gallery, labels, mated, truth = [], [], [], []
    for label, name in enumerate(enrolled):
        faces = photos[name][rng.permutation(len(photos[name]))]
        gallery.append(faces[:per_person])
        labels += [label] * len(faces[:per_person])
        if len(faces) > per_person:
            mated.append(faces[per_person])
            truth.append(label)
    gallery_matrix, label_array = np.concatenate(gallery), np.array(labels)
    mated_label, mated_distance = nearest_distances(gallery_matrix, label_array, np.array(mated).reshape(-1, 128))
    stranger_probes = np.stack([photos[name][rng.integers(len(photos[name]))] for name in strangers])
    _, stranger_distance = nearest_distances(gallery_matrix, label_array, stranger_probes)
    return mated_distance, mated_label == np.array(truth, dtype=int), stranger_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 2000])
    parser.add_argument("--photos", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    photos = people_photos()
    print(f"{len(photos)} people, {sum(len(p) for p in photos.values())} photos with a face")
    print("| photos a person | N | mated probes | strangers | FPIR at 0.6 | FNIR at 0.6 | tolerance for FPIR 1% "
          "| FNIR there |")
    print("|---|---|---|---|---|---|---|---|")
    for per_person in args.photos:
        eligible = {name: faces for name, faces in photos.items() if len(faces) >= per_person}
        for size in args.sizes:
            if size >= len(eligible):
                continue
            rng = np.random.default_rng(size * 10 + per_person)
            splits = [one_split(eligible, size, per_person, rng) for _ in range(args.splits)]
            mated = np.concatenate([s[0] for s in splits])
            right = np.concatenate([s[1] for s in splits])
            strangers = np.concatenate([s[2] for s in splits])
            fpir = float(np.mean(strangers <= TOLERANCE))
            fnir = float(np.mean(~(right & (mated <= TOLERANCE))))
            strict = float(np.quantile(strangers, 0.01))  # 1% of strangers fall within it
            fnir_strict = float(np.mean(~(right & (mated <= strict))))
            print(f"| {per_person} | {size} | {len(mated)} | {len(strangers)} | {fpir:.1%} | {fnir:.1%} | "
                  f"{strict:.3f} | {fnir_strict:.1%} |", flush=True)


if __name__ == "__main__":
    main()
