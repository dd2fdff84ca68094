"""The API scenario of LABELS.md, run through any client with the Flask test client's call shape."""

from __future__ import annotations

from typing import Any

from tests.conftest import face_photo
from tests.conftest import test_images
from tests.servers import upload


def enroll(client: Any, name: str, *photos: str, at: str = "") -> Any:
    """Enroll ``photos`` of test_images as ``name``; ``at="/collections/x"`` in collection x."""
    return client.post(f"{at}/enroll", data={"name": name, "image": [upload(test_images(p)) for p in photos]})


def recognize(client: Any, relative: str, at: str = "", **fields: str) -> Any:
    return client.post(f"{at}/recognize", data={"image": upload(face_photo(relative)), **fields})


def names(response: Any) -> list[str | None]:
    assert response.status_code == 200, response.json
    return sorted((face["name"] for face in response.json["faces"]), key=str)


def run_labelled_scenario(client: Any) -> None:
    """Enroll obama and biden, then recognize the labelled photos; every answer as LABELS.md says."""
    first = enroll(client, "obama", "obama.jpg")
    assert first.status_code == 201, first.json
    assert first.json["name"] == "obama" and first.json["face_count"] == 1
    [face] = first.json["faces"]
    assert len(face["id"]) == 32 and set(face["box"]) == {"top", "right", "bottom", "left"}
    assert enroll(client, "biden", "biden.jpg").status_code == 201

    assert names(recognize(client, "examples/two_people.jpg")) == ["biden", "obama"]
    for photo in ("tests/test_images/obama2.jpg", "tests/test_images/obama3.jpg", "tests/test_images/32bit.png"):
        assert names(recognize(client, photo)) == ["obama"], photo
    stranger = recognize(client, "examples/lin-manuel-miranda.png")
    assert stranger.json["faces"][0]["name"] is None and stranger.json["faces"][0]["matched"] is False
    assert stranger.json["faces"][0]["distance"] > 0.6

    everyone = [{"name": "biden", "face_count": 1}, {"name": "obama", "face_count": 1}]
    assert client.get("/people").json == {"people": everyone, "next": None}
    assert client.delete("/people/biden").json == {"name": "biden", "deleted_faces": 1}
    assert names(recognize(client, "examples/two_people.jpg")) == [None, "obama"]
