"""dlib's CNN face detector on numpy: the same boxes and scores as dlib's own, and a reader that checks the file."""

from __future__ import annotations

import dlib
import numpy as np
import pytest
from PIL import Image

from faceapi.cnn import CnnFaceDetector
from faceapi.cnn import Rect
from faceapi.cnn import tiled_pyramid_layout
from faceapi.dlib_model import ModelFormatError
from faceapi.mmod_model import read_mmod_detector
from faceapi.models import ModelPaths
from tests.conftest import face_photo

PATH = ModelPaths.from_package().cnn_detector
# Labelled photos, shrunk by a step so that dlib's own CNN runs in about a second, and the upsampling to compare at.
CASES = [
    ("examples/two_people.jpg", 2, 0),
    ("examples/two_people.jpg", 3, 1),
    ("examples/knn_examples/test/obama_and_biden.jpg", 3, 0),
    ("examples/knn_examples/test/kit_with_rose.jpg", 3, 1),
    ("tests/test_images/obama.jpg", 4, 1),
    ("tests/test_images/biden.jpg", 3, 0),
    ("examples/lin-manuel-miranda.png", 2, 0),
    ("examples/obama-480p.jpg", 2, 1),
]


@pytest.fixture(scope="module")
def detectors() -> tuple[CnnFaceDetector, dlib.cnn_face_detection_model_v1]:
    return CnnFaceDetector.load(PATH), dlib.cnn_face_detection_model_v1(str(PATH))


@pytest.mark.parametrize(("relative", "step", "upsample"), CASES)
def test_same_boxes_and_scores_as_dlib(detectors, relative: str, step: int, upsample: int) -> None:
    """Every face dlib's CNN finds, in its order, the box to the pixel and the score within 1e-3 (1e-5 here)."""
    ours, theirs = detectors
    image = np.ascontiguousarray(np.asarray(Image.open(face_photo(relative)).convert("RGB"))[::step, ::step])
    expected = theirs(image, upsample)
    found = ours.detect(image, upsample)
    assert expected, relative  # every case shows a face dlib finds
    assert [d.rect for d in found] == [Rect(e.rect.left(), e.rect.top(), e.rect.right(), e.rect.bottom())
                                       for e in expected]
    np.testing.assert_allclose([d.confidence for d in found], [e.confidence for e in expected], atol=1e-5)


def test_no_face_no_detection(detectors) -> None:
    ours, theirs = detectors
    gray = np.full((240, 320, 3), 128, dtype=np.uint8)
    assert ours.detect(gray) == [] and len(theirs(gray, 0)) == 0
    assert ours.detect(np.zeros((8, 300, 3), dtype=np.uint8)) == []  # under dlib's 10 px tiling limit


def test_tiled_pyramid_layout_is_dlibs() -> None:
    """The 331x563 example of ../shared/notes/dlib-mmod-detector.md: 22 levels in a 1245x585 tensor, two columns."""
    levels, rows, cols = tiled_pyramid_layout(331, 563)
    assert (len(levels), rows, cols) == (22, 1245, 585)
    assert levels[0] == Rect(11, 11, 573, 341)
    assert levels[4] == Rect(11, 1076, 280, 1233)
    assert levels[5] == Rect(349, 1103, 573, 1233)
    assert levels[21] == Rect(564, 348, 573, 352)


def test_reader_folds_batch_norm_and_reads_to_the_end() -> None:
    network = read_mmod_detector(PATH)
    assert [conv.weights.shape for conv, _ in network.layers] == [
        (16, 3, 5, 5), (32, 16, 5, 5), (32, 32, 5, 5), (45, 32, 5, 5), (45, 45, 5, 5), (45, 45, 5, 5), (1, 45, 9, 9)]
    assert network.layers[-1][1] is None and network.window == (80, 80)
    assert network.nms_iou == pytest.approx(0.3382761351109955)
    gains = np.concatenate([affine.gamma for _, affine in network.layers[:-1]])
    assert 40 < gains.min() and gains.max() < 100  # folded with eps 1e-4: the raw gammas are near 1


def test_reader_refuses_other_files(tmp_path) -> None:
    data = PATH.read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[:-100])
    longer = tmp_path / "longer.dat"
    longer.write_bytes(data + b"\x00")
    for path in (truncated, longer, ModelPaths.from_package().encoder):
        with pytest.raises(ModelFormatError):
            read_mmod_detector(path)


@pytest.mark.parametrize("band_rows", [8, 13, 40])
def test_bands_give_the_whole_pass(detectors, band_rows: int) -> None:
    """The network in bands of any height (the halo carried, zero rows only at the tensor's top and bottom)
    gives the scores of one whole pass, to float32 summation order, on one thread or two."""
    ours, _ = detectors
    image = np.ascontiguousarray(np.asarray(Image.open(face_photo("examples/two_people.jpg")).convert("RGB"))[::2, ::2])
    pyramid = ours.pyramid(image)
    tensor = pyramid.band(0, pyramid.rows)
    whole = ours._scores(pyramid, band_rows=10**6)
    for threads in (1, 2):
        # The pyramid made band by band (levels dropped behind the bands) is the whole tensor, row for row.
        made, parts = ours.pyramid(image), []
        for first in range(0, made.rows, band_rows * 8):
            parts.append(made.band(first, first + band_rows * 8))
            made.release_above(first + band_rows * 8)
        np.testing.assert_array_equal(np.concatenate(parts), tensor)
        banded = ours._scores(ours.pyramid(image), band_rows=band_rows, threads=threads)
        assert banded.shape == whole.shape
        np.testing.assert_allclose(banded, whole, atol=1e-5)
