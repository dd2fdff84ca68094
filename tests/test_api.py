"""The HTTP contract through Flask's test client: the labelled scenario and every documented error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import face_photo
from tests.conftest import test_images
from tests.photos import png_bytes
from tests.scenario import enroll
from tests.scenario import recognize
from tests.scenario import run_labelled_scenario
from tests.servers import upload


def test_labelled_scenario(client) -> None:
    run_labelled_scenario(client)


def test_health_and_ready(client) -> None:
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/ready").status_code == 200


@pytest.mark.store_independent
def test_response_boxes_are_in_upload_coordinates(client) -> None:
    """obama3.jpg (2333 px) is encoded from a 1600 px copy; its box is reported in the original's pixels."""
    [face] = recognize(client, "tests/test_images/obama3.jpg").json["faces"]
    top, right, bottom, left = (face["box"][side] for side in ("top", "right", "bottom", "left"))
    measured = (277, 954, 598, 633)  # LABELS.md, full-size HOG
    assert abs(top - measured[0]) < 40 and abs(right - measured[1]) < 40
    assert abs(bottom - measured[2]) < 40 and abs(left - measured[3]) < 40


def test_enroll_adds_to_existing_person(client) -> None:
    assert enroll(client, "obama", "obama.jpg").json["face_count"] == 1
    second = enroll(client, "obama", "obama2.jpg", "obama3.jpg")
    assert second.status_code == 201
    assert second.json["face_count"] == 3 and len(second.json["faces"]) == 2
    assert client.get("/people").json["people"] == [{"name": "obama", "face_count": 3}]


def test_per_request_tolerance(client) -> None:
    enroll(client, "obama", "obama.jpg")
    strict = recognize(client, "tests/test_images/obama2.jpg", tolerance="0.2").json["faces"][0]
    assert strict["name"] is None and strict["matched"] is False and 0.2 < strict["distance"] <= 0.6
    assert recognize(client, "tests/test_images/obama2.jpg", tolerance="0.5").json["faces"][0]["name"] == "obama"


@pytest.mark.store_independent
def test_empty_gallery_and_no_face(client) -> None:
    [face] = recognize(client, "tests/test_images/obama.jpg").json["faces"]
    assert face["name"] is None and face["distance"] is None
    response = client.post("/recognize", data={"image": upload(png_bytes(), "blank.png")})
    # A 320 px photo is searched for faces from 20 px (the default: YuNet on the photo at its own size).
    assert response.status_code == 200
    assert response.json == {"image": {"width": 320, "height": 240}, "faces": [],
                             "detection": {"min_face_px": 20, "limited": False, "detector": "yunet"}}


def test_enroll_is_all_or_nothing(client) -> None:
    response = enroll(client, "obama", "obama.jpg", "obama2.jpg")
    assert response.status_code == 201
    mixed = client.post("/enroll", data={"name": "obama", "image": [
        upload(test_images("obama3.jpg")), upload(face_photo("examples/two_people.jpg"))]})
    assert mixed.status_code == 422 and mixed.json["error"]["code"] == "multiple_faces"
    assert client.get("/people").json["people"] == [{"name": "obama", "face_count": 2}]


def _truncated_jpeg() -> bytes:
    data = test_images("obama.jpg").read_bytes()
    return data[: len(data) // 2]


BAD_REQUESTS = [
    # (id, path, form builder, status, code)
    ("empty upload", "/recognize", lambda: {"image": upload(b"", "empty.jpg")}, 400, "empty_image"),
    ("non-image bytes", "/recognize", lambda: {"image": upload(b"hello, not a picture", "x.jpg")}, 415, "unsupported_image"),
    ("truncated jpeg", "/recognize", lambda: {"image": upload(_truncated_jpeg(), "half.jpg")}, 415, "unsupported_image"),
    ("wrong field name", "/recognize", lambda: {"photo": upload(test_images("obama.jpg"))}, 400, "missing_image"),
    ("two images to recognize", "/recognize", lambda: {"image": [upload(test_images("obama.jpg"))] * 2}, 400, "too_many_images"),
    ("tolerance text", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": "high"}, 400, "invalid_tolerance"),
    ("tolerance negative", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": "-0.1"}, 400, "invalid_tolerance"),
    ("tolerance nan", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": "nan"}, 400, "invalid_tolerance"),
    ("tolerance above 1", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": "1.5"}, 400, "invalid_tolerance"),
    ("tolerance twice", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": ["0.5", "0.6"]}, 400, "invalid_tolerance"),
    ("tolerance blank", "/recognize", lambda: {"image": upload(test_images("obama.jpg")), "tolerance": ""}, 400, "invalid_tolerance"),
    ("landmarks as a number", "/detect", lambda: {"image": upload(test_images("obama.jpg")), "landmarks": "1"}, 400, "invalid_landmarks"),
    ("missing name", "/enroll", lambda: {"image": upload(test_images("obama.jpg"))}, 400, "missing_name"),
    ("blank name", "/enroll", lambda: {"name": "  ", "image": upload(test_images("obama.jpg"))}, 400, "invalid_name"),
    ("long name", "/enroll", lambda: {"name": "x" * 10_000, "image": upload(test_images("obama.jpg"))}, 400, "invalid_name"),
    ("control character", "/enroll", lambda: {"name": "bad\x00name", "image": upload(test_images("obama.jpg"))}, 400, "invalid_name"),
    ("enroll without image", "/enroll", lambda: {"name": "obama"}, 400, "missing_image"),
    ("enroll no face", "/enroll", lambda: {"name": "obama", "image": upload(png_bytes(gray=255), "blank.png")}, 422, "no_face"),
    ("enroll two faces", "/enroll", lambda: {"name": "obama", "image": upload(face_photo("examples/two_people.jpg"))}, 422, "multiple_faces"),
    ("enroll bad image", "/enroll", lambda: {"name": "obama", "image": upload(b"%PDF-1.4", "x.jpg")}, 415, "unsupported_image"),
]


@pytest.mark.store_independent
@pytest.mark.parametrize(("path", "form", "status", "code"), [row[1:] for row in BAD_REQUESTS],
                         ids=[row[0] for row in BAD_REQUESTS])
def test_bad_input(client, path: str, form, status: int, code: str) -> None:
    response = client.post(path, data=form())
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert client.get("/people").json == {"people": [], "next": None}  # nothing was stored


@pytest.mark.store_independent
def test_a_json_body_nested_too_deeply_is_400(client) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/recognize", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"


@pytest.mark.store_independent
def test_json_body_without_encodings(client) -> None:
    """A JSON body is for encodings: an image in it (base64 or anything) is named as the fault."""
    response = client.post("/recognize", data=json.dumps({"image": "aGVsbG8="}), content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_encoding"
    assert response.json["error"]["field"] == "encodings"
    response = client.post("/enroll", data=json.dumps({"image": "aGVsbG8="}), content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "missing_name"


@pytest.mark.store_independent
def test_upload_over_limit(make_client) -> None:
    response = make_client(upload_limit_bytes=100_000).post("/recognize", data={"image": upload(test_images("obama.jpg"))})
    assert response.status_code == 413 and response.json["error"]["code"] == "upload_too_large"


@pytest.mark.store_independent
def test_image_over_pixel_limit(make_client) -> None:
    response = make_client(max_image_pixels=500_000).post("/recognize", data={"image": upload(test_images("obama.jpg"))})
    assert response.status_code == 413 and response.json["error"]["code"] == "image_too_large"


def test_unknown_person_and_routes(client) -> None:
    response = client.delete("/people/nobody")
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_person"
    assert client.get("/nowhere").json["error"]["code"] == "not_found"
    wrong_method = client.get("/enroll")
    assert wrong_method.status_code == 405 and wrong_method.json["error"]["code"] == "method_not_allowed"


@pytest.mark.store_independent
def test_unexpected_error_hides_details(client, app, monkeypatch) -> None:
    """A bug gives a generic 500 JSON body, never a traceback (the store is made to fail in an unplanned way)."""
    def broken() -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(app.extensions["faceapi"].store, "people", broken)
    response = client.get("/people")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "secret" not in json.dumps(response.json) and "Traceback" not in json.dumps(response.json)


@pytest.mark.store_independent
def test_cors(make_client) -> None:
    client = make_client(cors_origins=("https://app.example",))
    allowed = client.get("/health", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def _deep_image(widen) -> bytes:
    """obama2.jpg's grey levels widened to a deeper type (``widen`` maps 0-255 to its values): PNG, or TIFF for floats."""
    grey = np.asarray(Image.open(test_images("obama2.jpg")).convert("L"))
    deep = Image.fromarray(widen(grey))
    buffer = io.BytesIO()
    deep.save(buffer, "TIFF" if deep.mode == "F" else "PNG")
    return buffer.getvalue()


DEEP_IMAGES = [
    # 8-bit values in a 16-bit container, as many tools write them: scaled by 1/65535 it would be black.
    ("16-bit, low 8 bits used", lambda: _deep_image(lambda g: g.astype(np.uint16))),
    ("16-bit, full range", lambda: _deep_image(lambda g: g.astype(np.uint16) * 257)),
    ("16-bit, 12-bit sensor range", lambda: _deep_image(lambda g: g.astype(np.uint16) * 16)),
    ("32-bit float, 0 to 1", lambda: _deep_image(lambda g: g.astype(np.float32) / 255)),
]


@pytest.mark.store_independent
@pytest.mark.parametrize("build", [row[1] for row in DEEP_IMAGES], ids=[row[0] for row in DEEP_IMAGES])
def test_deep_images_are_scaled_by_their_range(client, build) -> None:
    enroll(client, "obama", "obama.jpg")
    response = client.post("/recognize", data={"image": upload(build(), "deep.png")})
    assert [face["name"] for face in response.json["faces"]] == ["obama"], response.json
