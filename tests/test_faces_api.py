"""Verify, detect, encode, and what /recognize gained (top_k, max_faces, image size, posted encodings),
on the labelled photos of ../shared/faces (distances and boxes from its LABELS.md)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from faceapi.engine import Box
from tests.conftest import face_photo
from tests.conftest import test_images
from tests.photos import iou
from tests.photos import png_bytes
from tests.scenario import enroll
from tests.scenario import recognize
from tests.servers import upload


def _post(client, path: str, **fields):
    return client.post(path, data={name: upload(face_photo(value)) if name.startswith("image") else value
                                   for name, value in fields.items()})


def _overlap(box: dict[str, int], labelled: tuple[int, int, int, int]) -> float:
    """Intersection over union of an answer's box and a LABELS.md ``(top, right, bottom, left)``."""
    return iou(Box(**box), Box(*labelled))


@pytest.mark.store_independent
def test_verify_two_images(client) -> None:
    same = _post(client, "/verify", image_a="tests/test_images/obama.jpg", image_b="tests/test_images/obama2.jpg")
    assert same.status_code == 200, same.json
    assert same.json["match"] is True and same.json["tolerance"] == 0.6
    assert same.json["distance"] == pytest.approx(0.3457, abs=0.01)
    assert _overlap(same.json["image_a"]["box"], (142, 617, 409, 349)) > 0.7
    assert same.json["image_a"]["image"] == {"width": 910, "height": 1137}
    other = _post(client, "/verify", image_a="tests/test_images/obama.jpg", image_b="tests/test_images/biden.jpg")
    assert other.json["match"] is False and other.json["distance"] == pytest.approx(0.8402, abs=0.01)
    strict = _post(client, "/verify", image_a="tests/test_images/obama.jpg", image_b="tests/test_images/obama2.jpg",
                   tolerance="0.3")
    assert strict.json["match"] is False and strict.json["tolerance"] == 0.3


def test_verify_against_an_enrolled_name(client) -> None:
    assert enroll(client, "obama", "obama.jpg", "obama3.jpg").status_code == 201
    answer = _post(client, "/verify", image="tests/test_images/obama2.jpg", name="obama")
    assert answer.status_code == 200, answer.json
    # The nearest of the person's faces: obama3 is 0.4285 from obama2, obama.jpg 0.3457.
    assert answer.json["match"] is True and answer.json["name"] == "obama"
    assert answer.json["distance"] == pytest.approx(0.3457, abs=0.01)
    stranger = _post(client, "/verify", image="examples/lin-manuel-miranda.png", name="obama")
    assert stranger.json["match"] is False and stranger.json["distance"] > 0.6
    unknown = _post(client, "/verify", image="tests/test_images/obama2.jpg", name="nobody")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_person"


@pytest.mark.store_independent
def test_verify_says_which_side_has_no_face_or_several(client) -> None:
    several = _post(client, "/verify", image_a="examples/two_people.jpg", image_b="tests/test_images/obama.jpg")
    assert several.status_code == 422
    assert several.json["error"]["code"] == "multiple_faces" and several.json["error"]["field"] == "image_a"
    blank = client.post("/verify", data={"image_a": upload(test_images("obama.jpg")),
                                         "image_b": upload(png_bytes(), "blank.png")})
    assert blank.status_code == 422
    assert blank.json["error"]["code"] == "no_face" and blank.json["error"]["field"] == "image_b"
    # Asked to, it takes the largest face: Kit's (107 px) in kit_with_rose.jpg, not Rose's (75 px).
    largest = _post(client, "/verify", image_a="examples/knn_examples/test/kit_with_rose.jpg",
                    image_b="examples/knn_examples/train/kit_harington/john1.jpeg", largest="true")
    assert largest.status_code == 200 and largest.json["match"] is True
    assert _overlap(largest.json["image_a"]["box"], (92, 354, 199, 247)) > 0.5
    missing = _post(client, "/verify", image_a="tests/test_images/obama.jpg")
    assert missing.status_code == 400 and missing.json["error"]["field"] == "image_b"


@pytest.mark.parametrize(("photo", "labelled"), [
    ("examples/two_people.jpg", [(57, 964, 242, 778), (47, 408, 202, 253)]),
    ("examples/knn_examples/test/obama_and_biden.jpg",
     [(449, 923, 634, 737), (390, 1356, 613, 1133), (1062, 1749, 1216, 1594)]),
    ("examples/knn_examples/test/kit_with_rose.jpg", [(130, 154, 204, 79), (92, 354, 199, 247)]),
])
def test_detect_with_landmarks_finds_the_labelled_faces(client, photo: str, labelled: list) -> None:
    answer = _post(client, "/detect", image=photo, landmarks="true")
    assert answer.status_code == 200, answer.json
    with Image.open(face_photo(photo)) as image:
        assert answer.json["image"] == {"width": image.width, "height": image.height}
    faces = answer.json["faces"]
    assert len(faces) == len(labelled)
    for box in labelled:
        face = max(faces, key=lambda face: _overlap(face["box"], box))
        assert _overlap(face["box"], box) > 0.5
        points = face["landmarks"]
        assert set(points) == {"right_eye", "left_eye", "nose_tip"}
        assert [len(points[name]) for name in ("right_eye", "left_eye", "nose_tip")] == [2, 2, 1]
        top, right, bottom, left = box
        for x, y in points["right_eye"] + points["left_eye"] + points["nose_tip"]:
            assert left - 10 <= x <= right + 10 and top - 10 <= y <= bottom + 10
        # Named as face_recognition names them: "right_eye" is the one on the picture's right.
        assert max(x for x, _ in points["left_eye"]) < min(x for x, _ in points["right_eye"])
        assert max(y for _, y in points["right_eye"] + points["left_eye"]) < points["nose_tip"][0][1]
    plain = _post(client, "/detect", image=photo)
    assert all(set(face) == {"box", "confidence"} for face in plain.json["faces"])


def test_top_k_ranks_distinct_people(client) -> None:
    for name, photos in {"obama": ("obama.jpg", "obama3.jpg"), "biden": ("biden.jpg",)}.items():
        assert enroll(client, name, *photos).status_code == 201
    for name, photo in {"alex": "examples/alex-lacamoire.png",
                        "kit": "examples/knn_examples/train/kit_harington/john1.jpeg"}.items():
        assert client.post("/enroll", data={"name": name, "image": upload(face_photo(photo))}).status_code == 201
    answer = recognize(client, "tests/test_images/obama2.jpg", top_k="3")
    [face] = answer.json["faces"]
    candidates = face["candidates"]
    assert [c["name"] for c in candidates][0] == "obama" and len(candidates) == 3
    assert len({c["name"] for c in candidates}) == 3  # obama's two faces take one place
    assert [c["distance"] for c in candidates] == sorted(c["distance"] for c in candidates)
    assert candidates[0]["distance"] == face["distance"] == pytest.approx(0.3457, abs=0.01)
    everyone = recognize(client, "tests/test_images/obama2.jpg", top_k="10").json["faces"][0]["candidates"]
    assert sorted(c["name"] for c in everyone) == ["alex", "biden", "kit", "obama"]
    assert everyone[:3] == candidates
    assert "candidates" not in recognize(client, "tests/test_images/obama2.jpg").json["faces"][0]


ADULTS_AND_CHILD = [(449, 923, 634, 737), (390, 1356, 613, 1133), (1062, 1749, 1216, 1594)]


@pytest.mark.store_independent
def test_max_faces_keeps_the_largest(client) -> None:
    photo = "examples/knn_examples/test/obama_and_biden.jpg"
    every = recognize(client, photo)
    assert len(every.json["faces"]) == 3
    two = recognize(client, photo, max_faces="2").json["faces"]
    areas = [(f["box"]["right"] - f["box"]["left"]) * (f["box"]["bottom"] - f["box"]["top"]) for f in two]
    assert len(two) == 2 and areas == sorted(areas, reverse=True)
    # The adults' faces are kept, the child's (155 px, the smallest) is left out.
    assert {max(range(3), key=lambda i: _overlap(f["box"], ADULTS_AND_CHILD[i])) for f in two} == {0, 1}
    [kit] = recognize(client, "examples/knn_examples/test/kit_with_rose.jpg", max_faces="1").json["faces"]
    assert _overlap(kit["box"], (92, 354, 199, 247)) > 0.5
    with Image.open(face_photo(photo)) as image:
        assert every.json["image"] == {"width": image.width, "height": image.height}


def test_posted_encodings_answer_as_their_photos(client) -> None:
    encoded = _post(client, "/encode", image="tests/test_images/obama.jpg")
    assert encoded.status_code == 200
    [face] = encoded.json["faces"]
    assert len(face["encoding"]) == 128 and _overlap(face["box"], (142, 617, 409, 349)) > 0.7
    enrolled = client.post("/enroll", json={"name": "obama", "encodings": [face["encoding"]],
                                            "external_ids": ["phone-7"]})
    assert enrolled.status_code == 201 and enrolled.json["face_count"] == 1
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    for photo in ("examples/two_people.jpg", "tests/test_images/obama2.jpg", "examples/lin-manuel-miranda.png"):
        by_photo = recognize(client, photo, top_k="2").json["faces"]
        encodings = [f["encoding"] for f in _post(client, "/encode", image=photo).json["faces"]]
        by_encoding = client.post("/recognize", json={"encodings": encodings, "top_k": 2})
        assert by_encoding.status_code == 200, by_encoding.json
        assert by_encoding.json["faces"] == [{k: v for k, v in f.items() if k not in ("box", "confidence")}
                                             for f in by_photo]
    # The same face enrolled from the photo instead: the same decisions and distances.
    photo_enrolled = recognize(client, "tests/test_images/obama2.jpg").json["faces"][0]
    assert client.delete("/people/obama").status_code == 200
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert recognize(client, "tests/test_images/obama2.jpg").json["faces"][0] == photo_enrolled


ENCODING = [0.01] * 128
BAD_ENCODINGS = [
    ("not a list", {"encodings": "x"}, None),
    ("empty", {"encodings": []}, None),
    ("short", {"encodings": [ENCODING, ENCODING[:127]]}, 1),
    ("text inside", {"encodings": [ENCODING, ENCODING, ["a"] * 128]}, 2),
    ("true inside", {"encodings": [[True] * 128]}, 0),
    ("huge", {"encodings": [[1e300] * 128]}, 0),
    ("too many", {"encodings": [ENCODING] * 101}, None),
]


@pytest.mark.parametrize(("body", "index"), [row[1:] for row in BAD_ENCODINGS], ids=[row[0] for row in BAD_ENCODINGS])
@pytest.mark.parametrize("path", ["/recognize", "/enroll"])
def test_bad_encodings_name_the_index(client, path: str, body: dict, index: int | None) -> None:
    response = client.post(path, json={"name": "x", **body})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_encoding"
    assert response.json["error"].get("index") == index
    assert client.get("/people").json["people"] == []


@pytest.mark.store_independent
def test_nan_encoding_is_refused(client) -> None:
    body = json.dumps({"encodings": [[float("nan")] + [0.0] * 127]})  # Python writes NaN; JSON has no such number
    response = client.post("/recognize", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] in {"invalid_encoding", "invalid_json"}
