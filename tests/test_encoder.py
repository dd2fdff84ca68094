"""The numpy encoder against dlib's own, on every face of ../shared/faces; the model file reader; the GIL."""

from __future__ import annotations

import pathlib

import dlib
import numpy as np
import pytest

from faceapi.dlib_model import ModelFormatError
from faceapi.dlib_model import read_face_network
from faceapi.encoder import FaceEncoder
from faceapi.engine import FaceEngine
from faceapi.models import ModelPaths
from faceapi.pipeline import Pipeline
from tests.conftest import face_photo
from tests.servers import FACES

PATHS = ModelPaths.from_package()
ALL_PHOTOS = sorted(str(path.relative_to(FACES)) for path in FACES.rglob("*")
                    if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


@pytest.fixture(scope="module")
def dlib_encoder() -> dlib.face_recognition_model_v1:
    """dlib's own encoder: the reference, and nothing else."""
    return dlib.face_recognition_model_v1(str(PATHS.encoder))


def test_every_photo_is_covered() -> None:
    assert len(ALL_PHOTOS) == 32  # LABELS.md: 32 images


@pytest.mark.parametrize("relative", ALL_PHOTOS)
def test_same_numbers_as_dlib(pipeline: Pipeline, dlib_encoder, relative: str) -> None:
    """Every face found in every photo: the engine's encodings equal dlib's compute_face_descriptor on the
    same image and landmarks, within 1e-4 per component (float32 rounding, about 1e-6, is what remains)."""
    from tests.test_engine import pixels

    engine = pipeline.engine
    image = pixels(relative).pixels
    boxes = engine.face_locations(image, pipeline.detect.plan(image.shape[1], image.shape[0]).scale)
    assert boxes, relative  # LABELS.md: every one of these photos shows at least one face
    predictor = dlib.shape_predictor(str(PATHS.shape_predictor))
    shapes = dlib.full_object_detections()
    for box in boxes:
        shapes.append(predictor(image, dlib.rectangle(box.left, box.top, box.right, box.bottom)))
    expected = np.array([np.array(d) for d in dlib_encoder.compute_face_descriptor(image, shapes, 1)])
    got = engine.face_encodings(image, boxes)
    difference = float(np.abs(got - expected).max())
    print(f"{relative}: {len(boxes)} faces, largest difference {difference:.2e}")
    # Above 0: two computations, not one compared with itself (float32 rounding leaves about 1e-7).
    assert got.shape == expected.shape and 0 < difference < 1e-4


def test_batch_and_single_give_the_same_numbers() -> None:
    encoder = FaceEncoder.load(PATHS.encoder)
    rng = np.random.default_rng(7)
    chips = rng.integers(0, 256, size=(3, 150, 150, 3), dtype=np.uint8)
    together = encoder.encode(chips)
    alone = np.concatenate([encoder.encode(chips[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


# The reader refuses what it does not understand.
@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return PATHS.encoder.read_bytes()


def _refused(tmp_path: pathlib.Path, data: bytes) -> str:
    path = tmp_path / "model.dat"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError) as caught:
        read_face_network(path)
    message = str(caught.value)
    assert str(path) in message and "is not a dlib face-recognition ResNet v1 file" in message
    return message


def test_reader_accepts_the_shipped_file() -> None:
    network = read_face_network(PATHS.encoder)
    assert network.chip_size == 150 and len(network.blocks) == 14 and network.projection.shape == (256, 128)
    np.testing.assert_allclose(network.channel_means, [122.782, 117.001, 104.298], atol=1e-3)


def test_reader_refuses_other_files(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    assert "truncated" in _refused(tmp_path, model_bytes[: len(model_bytes) // 2])
    assert "unexpected bytes after the last layer" in _refused(tmp_path, model_bytes + b"\x01\x00")
    assert "implausible string length" in _refused(tmp_path, PATHS.shape_predictor.read_bytes())
    assert "truncated" in _refused(tmp_path, b"")
    # A network of another shape: the stem's first record says 64 filters instead of 32.
    stem = model_bytes.index(b"con_4")
    params_end = stem + 5 + 2 + 3 + 6 + 4736 * 4  # name, tensor version, four dims, float32 data
    altered = bytearray(model_bytes)
    assert altered[params_end : params_end + 2] == b"\x01\x20"  # num_filters = 32
    altered[params_end + 1] = 0x40
    assert "conv filters" in _refused(tmp_path, bytes(altered))


def test_engine_refuses_a_foreign_encoder_file(tmp_path: pathlib.Path) -> None:
    foreign = tmp_path / "encoder.dat"
    foreign.write_bytes(face_photo("tests/test_images/obama.jpg").read_bytes())
    with pytest.raises(ModelFormatError):
        FaceEngine(ModelPaths(PATHS.shape_predictor, foreign))
