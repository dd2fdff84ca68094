"""The caller chooses the detector: HOG or dlib's CNN, on every endpoint that detects, and as the default."""

from __future__ import annotations

import dataclasses

import pytest

from faceapi.config import Settings
from faceapi.pipeline import Pipeline
from tests.conftest import face_photo
from tests.conftest import test_images
from tests.oracle import face_recognition
from tests.scenario import enroll
from tests.servers import upload

# Each endpoint that detects, with a valid form for it.
ENDPOINTS = {
    "/detect": lambda: {"image": upload(test_images("obama.jpg"))},
    "/encode": lambda: {"image": upload(test_images("obama.jpg"))},
    "/recognize": lambda: {"image": upload(test_images("obama.jpg"))},
    "/verify": lambda: {"image_a": upload(test_images("obama.jpg")), "image_b": upload(test_images("obama2.jpg"))},
    "/enroll": lambda: {"name": "obama", "image": upload(test_images("obama.jpg"))},
}


def _detection(answer: dict) -> dict:
    """What the scan searched: in the answer, or (``/enroll``) beside each face."""
    return answer["detection"] if "detection" in answer else answer["faces"][0]["detection"]


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_every_detecting_endpoint_takes_the_detector(client, path: str) -> None:
    cnn = client.post(path, data={**ENDPOINTS[path](), "detector": "cnn"})
    assert cnn.status_code in (200, 201), cnn.json
    if path == "/verify":
        assert cnn.json["match"] is True and 0 < cnn.json["image_a"]["confidence"] < 2
        return
    assert _detection(cnn.json)["detector"] == "cnn"
    if path != "/enroll":
        [face] = cnn.json["faces"]
        assert 0 < face["confidence"] < 2  # the CNN's score (not a probability: about 1 for a clear face)
    hog = client.post(path, data={**ENDPOINTS[path](), "detector": "hog"})
    assert hog.status_code in (200, 201) and _detection(hog.json)["detector"] == "hog"
    assert all("confidence" not in face for face in hog.json["faces"] if "box" in face and path != "/enroll")
    default = client.post(path, data=ENDPOINTS[path]())
    assert default.status_code in (200, 201) and _detection(default.json)["detector"] == "yunet"
    if path != "/enroll":
        [face] = default.json["faces"]
        assert 0.75 <= face["confidence"] <= 1  # YuNet's score, at least FACEAPI_MIN_DETECTION_CONFIDENCE


@pytest.mark.store_independent
@pytest.mark.parametrize("path", sorted(ENDPOINTS))
@pytest.mark.parametrize("value", ["CNN", "mmod", "", "hog,cnn", "YuNet"])
def test_bad_detector(client, path: str, value: str) -> None:
    response = client.post(path, data={**ENDPOINTS[path](), "detector": value})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_detector", response.json
    assert response.json["error"]["field"] == "detector"


@pytest.mark.store_independent
def test_the_setting_chooses_the_default(make_client) -> None:
    client = make_client(detector="cnn")
    answer = client.post("/detect", data={"image": upload(test_images("obama.jpg"))}).json
    assert answer["detection"]["detector"] == "cnn" and "confidence" in answer["faces"][0]
    asked = client.post("/detect", data={"image": upload(test_images("obama.jpg")), "detector": "hog"}).json
    assert asked["detection"]["detector"] == "hog"


@pytest.mark.parametrize("relative", ["examples/obama-240p.jpg", "examples/two_people.jpg"])
def test_cnn_at_face_recognitions_scale_gives_its_boxes(engine, relative: str) -> None:
    """face_recognition's ``model="cnn"`` (dlib's CNN, upsampled once) is the pipeline's CNN searching from 40 px:
    the same boxes, to the pixel (two_people.jpg: a 3 MP scan, its network and pyramid made in bands)."""
    pipeline = Pipeline(engine, Settings(workers=1, cnn_max_scan_pixels=3_000_000))
    analysis = pipeline.find_faces(face_photo(relative).read_bytes(), 40, detector="cnn", encode=False)
    image = face_recognition.load_image_file(face_photo(relative))
    expected = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="cnn")
    assert sorted(dataclasses.astuple(face.box) for face in analysis.faces) == sorted(expected)
    assert analysis.plan.scale == 2 and analysis.plan.min_face_px == 40


def test_cnn_enrolls_and_recognizes(client) -> None:
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    answer = client.post("/recognize", data={"image": upload(test_images("obama2.jpg")), "detector": "cnn"}).json
    assert [face["name"] for face in answer["faces"]] == ["obama"]
