"""YuNet, the default detector: small and turned faces, large faces, bands, scores and the recognition on its boxes."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from faceapi.config import Settings
from faceapi.engine import WHOLE_SCAN
from faceapi.engine import Box
from faceapi.engine import FaceEngine
from faceapi.imaging import decode_image
from faceapi.pipeline import Pipeline
from tests.photos import class_photo
from tests.photos import iou
from tests.servers import FACES


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def obama() -> Image.Image:
    return Image.open(FACES / "tests/test_images/obama.jpg").convert("RGB")


def test_small_faces_without_upsampling(pipeline: Pipeline) -> None:
    """A 1000x750 class photo of 40 faces 20 px tall: YuNet finds them at the photo's own size; HOG, searching
    from its default 36 px on a copy doubled once, finds none."""
    photo = jpeg(Image.open(io.BytesIO(class_photo(80))).resize((1000, 750), Image.Resampling.LANCZOS))
    found = pipeline.find_faces(photo, encode=False)
    assert found.plan.scale == 1.0 and found.plan.min_face_px == 20
    assert 36 <= len(found.faces) <= 40
    assert not pipeline.find_faces(photo, detector="hog", encode=False).faces


@pytest.mark.parametrize("degrees", [40, -40])
def test_tilted_face(pipeline: Pipeline, degrees: int) -> None:
    """A head tilted 40 degrees is found (at 50 to 60 degrees only dlib's CNN finds it: docs/DETECTORS.md)."""
    photo = jpeg(obama().rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128)))
    [face] = pipeline.find_faces(photo, encode=False).faces
    assert face.confidence >= 0.75


@pytest.mark.parametrize("side", [1137, 2200, 4000])
def test_a_large_face_is_found_once_and_whole(engine: FaceEngine, side: int) -> None:
    """YuNet cuts faces larger than about 400 scanned px: they come from a coarser scan, once, with the box
    HOG gives the same face (scaled)."""
    image = obama()
    factor = side / image.height
    pixels = np.asarray(image.resize((round(image.width * factor), side), Image.Resampling.BILINEAR))
    [(box, confidence)] = engine.face_detections(pixels, 1.0, "yunet", WHOLE_SCAN)
    assert confidence >= 0.85
    assert iou(box, Box(142, 617, 409, 349).scaled(factor)) >= 0.6


def test_bands_find_what_one_scan_finds(engine: FaceEngine) -> None:
    """A 12 MP class photo searched from 20 px (12 MP scanned, in bands of 0.8 MP) finds the faces that one
    whole scan finds, with the same boxes but for a few pixels (YuNet's points move a little with what
    surrounds a face in its band)."""
    image = decode_image(class_photo(120), max_side_px=4000, max_pixels=10**9).pixels
    banded = engine.face_detections(image, 1.0, "yunet")
    whole = engine.face_detections(image, 1.0, "yunet", WHOLE_SCAN)
    assert len(banded) == len(whole) == 40
    overlaps = sorted(max(iou(box, other) for other, _ in banded) for box, _ in whole)
    assert overlaps[0] >= 0.7 and overlaps[len(overlaps) // 2] >= 0.9, overlaps


def test_the_score_threshold_is_a_setting(engine: FaceEngine) -> None:
    photo = class_photo(80, size=(1600, 1200), count=20, rows=4)
    default = Pipeline(engine, Settings(workers=1)).find_faces(photo, encode=False).faces
    assert len(default) == 20 and all(0.75 <= face.confidence <= 1 for face in default)
    strict = Pipeline(engine, Settings(workers=1, min_detection_confidence=0.97)).find_faces(photo, encode=False)
    assert len(strict.faces) < 20 and all(face.confidence >= 0.97 for face in strict.faces)


def test_no_face_in_a_flat_or_noisy_image(pipeline: Pipeline) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    assert not pipeline.find_faces(jpeg(Image.fromarray(noise)), encode=False).faces
    assert not pipeline.find_faces(jpeg(Image.new("RGB", (640, 480), (90, 90, 90))), encode=False).faces
    assert not pipeline.find_faces(jpeg(Image.new("RGB", (7, 5), (90, 90, 90))), encode=False).faces


def test_encodings_on_its_boxes_are_those_on_hog_boxes(engine: FaceEngine) -> None:
    """YuNet's boxes are mapped to the square box HOG gives the same face, which dlib's 5-point model expects:
    on the labelled photos, the encodings from both boxes are 0.1 or less apart (0.6 decides a name)."""
    yunet = Pipeline(engine, Settings(workers=1))
    hog = Pipeline(engine, dataclasses.replace(Settings(workers=1), detector="hog"))
    for photo in ("tests/test_images/obama.jpg", "tests/test_images/biden.jpg", "examples/two_people.jpg",
                  "examples/knn_examples/train/rose_leslie/img1.jpg", "examples/alex-lacamoire.png"):
        data = (FACES / photo).read_bytes()
        by_yunet, by_hog = yunet.find_faces(data).faces, hog.find_faces(data).faces
        assert len(by_yunet) == len(by_hog), photo
        for face in by_hog:
            twin = max(by_yunet, key=lambda other: iou(other.box, face.box))  # noqa: B023
            assert iou(twin.box, face.box) >= 0.6, photo
            assert np.linalg.norm(twin.encoding - face.encoding) <= 0.1, photo
