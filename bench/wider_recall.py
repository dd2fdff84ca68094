"""Faces found per detector on WIDER FACE validation photos, with the benchmark's own boxes, side by side with time.

Usage: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/wider_recall.py [--picture docs/detectors.png]

The photos and the ground truth are public (WIDER FACE, Yang et al. 2016; the validation split, whose boxes are
published): `gather` copies them out of the repositories that `SOURCES` names, as the search tool's ``fetch``
brings them to /work/.mirror (``fetch github:<repo>`` each first). Nothing of them is committed.

Every photo goes through the service's pipeline (decode, default scan plan, no encoding) with each detector at
its defaults. A labelled face counts as found when a box's centre lies inside it and the box's side is within
half to twice the face's (sqrt of width x height): detectors draw boxes of different shapes (HOG's square ones
sit inside WIDER's forehead-to-chin ones). A box that matches no labelled face, of any size, is a false box.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import time

import numpy as np

import common  # noqa: F401 - puts backend/ on sys.path
from faceapi.config import Settings
from faceapi.engine import Box
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline

MIRRORS = pathlib.Path("/work/.mirror")
DATA = pathlib.Path("/tmp/wider-val")
LABELS = ("SeonjiPark/SNU_FaceDetection", "data/widerface/val/label.txt")  # WIDER's val boxes, RetinaFace's layout
# Validation photos that public repositories keep under their WIDER FACE names (byte-identical or re-saved).
SOURCES = {
    "hukkelas/DSFD-Pytorch-Inference": ["images/0_Parade_Parade_0_873.jpg", "images/0_Parade_marchingband_1_765.jpg",
                                        "images/11_Meeting_Meeting_11_Meeting_Meeting_11_176.jpg",
                                        "images/11_Meeting_Meeting_11_Meeting_Meeting_11_26.jpg"],
    "peteryuX/retinaface-tf2": ["data/0_Parade_marchingband_1_149.jpg"],
    "yxlijun/S3FD.pytorch": ["img/0_Parade_marchingband_1_465.jpg"],
    "yxlijun/DSFD.pytorch": [f"img/0_Parade_marchingband_1_{n}.jpg" for n in (20, 234, 329, 488, 629)],
    "dlunion/DBFace": ["datas/12_Group_Group_12_Group_Group_12_728.jpg"],
    "SeonjiPark/SNU_FaceDetection": [f"data/sample_widerface/images/{name}.jpg" for name in (
        "0_Parade_marchingband_1_311", "10_People_Marching_People_Marching_10_People_Marching_People_Marching_10_848",
        "12_Group_Group_12_Group_Group_12_935", "12_Group_Large_Group_12_Group_Large_Group_12_228",
        "35_Basketball_basketballgame_ball_35_290", "49_Greeting_peoplegreeting_49_56",
        "50_Celebration_Or_Party_houseparty_50_17", "57_Angler_peoplefishing_57_53",
        "59_peopledrivingcar_peopledrivingcar_59_856", "7_Cheering_Cheering_7_413")],
}
DETECTORS = ("yunet", "hog", "cnn")
SIZES = (20, 40)


def git_show(repo: str, path: str) -> bytes:
    git_dir = MIRRORS / repo.replace("/", "+") / "repo"
    if (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


def gather() -> None:
    """Copy the photos and the labels out of the fetched repositories into `DATA`."""
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "label.txt").write_bytes(git_show(*LABELS))
    for repo, paths in SOURCES.items():
        for path in paths:
            (DATA / pathlib.Path(path).name).write_bytes(git_show(repo, path))


def labelled_faces() -> dict[str, np.ndarray]:
    """Photo name -> its faces' ``(x, y, w, h)`` boxes."""
    faces: dict[str, list[list[float]]] = {}
    for line in (DATA / "label.txt").read_text().splitlines():
        if line.startswith("#"):
            current = faces.setdefault(pathlib.Path(line[1:].strip()).name, [])
        elif line.strip():
            current.append([float(v) for v in line.split()[:4]])
    return {name: np.array(boxes).reshape(-1, 4) for name, boxes in faces.items()}


def score(truth: np.ndarray, boxes: list[Box]) -> tuple[dict[int, tuple[int, int]], int]:
    """Per size in `SIZES`: (labelled faces at least that wide found, labelled), and the false boxes."""
    sides = np.sqrt(truth[:, 2] * truth[:, 3])
    matched = np.zeros(len(truth), bool)
    false = 0
    for box in sorted(boxes, key=lambda b: -b.area):
        cx, cy, side = (box.left + box.right) / 2, (box.top + box.bottom) / 2, max(1, box.side)
        fits = ((truth[:, 0] <= cx) & (cx <= truth[:, 0] + truth[:, 2]) & (truth[:, 1] <= cy)
                & (cy <= truth[:, 1] + truth[:, 3]) & (side >= sides / 2) & (side <= sides * 2) & ~matched)
        if fits.any():
            best = np.flatnonzero(fits)[np.argmin(np.abs(np.log(side / sides[fits])))]
            matched[best] = True
        else:
            false += 1
    return {size: (int((matched & (truth[:, 2] >= size)).sum()), int((truth[:, 2] >= size).sum()))
            for size in SIZES}, false


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gather", action="store_true", help="copy the photos out of /work/.mirror first")
    parser.add_argument("--picture", type=pathlib.Path, help="draw each detector's boxes on one photo here")
    args = parser.parse_args()
    if args.gather or not (DATA / "label.txt").exists():
        gather()
    truth = labelled_faces()
    photos = sorted(path for path in DATA.glob("*.jpg"))
    pipeline = Pipeline(FaceEngine.load(), Settings())
    totals = {d: {"found": {s: 0 for s in SIZES}, "labelled": {s: 0 for s in SIZES}, "false": 0, "seconds": 0.0}
              for d in DETECTORS}
    print("photo | " + " | ".join(f"{d}: found >=20 / >=40, false, ms" for d in DETECTORS))
    found_boxes = {}
    for photo in photos:
        data = photo.read_bytes()
        cells = []
        for detector in DETECTORS:
            pipeline.find_faces(data, detector=detector, encode=False)  # warm
            start = time.perf_counter()
            analysis = pipeline.find_faces(data, detector=detector, encode=False)
            seconds = time.perf_counter() - start
            boxes = [face.box for face in analysis.faces]
            found_boxes[photo.name, detector] = boxes
            counts, false = score(truth[photo.name], boxes)
            total = totals[detector]
            for size, (hit, labelled) in counts.items():
                total["found"][size] += hit
                total["labelled"][size] += labelled
            total["false"] += false
            total["seconds"] += seconds
            cells.append(f"{counts[20][0]}/{counts[20][1]}, {counts[40][0]}/{counts[40][1]}, {false}, "
                         f"{seconds * 1000:.0f}")
        print(f"{photo.stem[:48]} | " + " | ".join(cells), flush=True)
    print("\ndetector | faces >= 20 px found | faces >= 40 px found | false boxes | time, all photos")
    for detector, total in totals.items():
        share = {s: total["found"][s] / max(1, total["labelled"][s]) for s in SIZES}
        print(f"{detector} | {total['found'][20]} / {total['labelled'][20]} ({share[20]:.0%}) | "
              f"{total['found'][40]} / {total['labelled'][40]} ({share[40]:.0%}) | {total['false']} | "
              f"{total['seconds']:.1f} s")
    if args.picture:
        draw(DATA / "12_Group_Large_Group_12_Group_Large_Group_12_228.jpg", found_boxes, truth, args.picture)


def draw(photo: pathlib.Path, found_boxes: dict, truth: dict[str, np.ndarray], out: pathlib.Path) -> None:
    """One panel per detector: the labelled faces in grey, the detector's boxes in colour."""
    from PIL import Image
    from PIL import ImageDraw

    image = Image.open(photo).convert("RGB")
    panels = []
    for detector, colour in zip(DETECTORS, ("#00e000", "#ffa000", "#00a0ff"), strict=True):
        panel = image.copy()
        pen = ImageDraw.Draw(panel)
        for x, y, w, h in truth[photo.name]:
            pen.rectangle((x, y, x + w, y + h), outline="#a0a0a0", width=1)
        boxes = found_boxes[photo.name, detector]
        for box in boxes:
            pen.rectangle((box.left, box.top, box.right, box.bottom), outline=colour, width=3)
        pen.rectangle((0, 0, 360, 34), fill="black")
        pen.text((8, 6), f"{detector}: {len(boxes)} boxes", fill=colour, font_size=24)
        panels.append(panel)
    sheet = Image.new("RGB", (image.width, image.height * len(panels)))
    for index, panel in enumerate(panels):
        sheet.paste(panel, (0, index * image.height))
    sheet.thumbnail((900, 2000))
    sheet.save(out, optimize=True)


if __name__ == "__main__":
    main()
