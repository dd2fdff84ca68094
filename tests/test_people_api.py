"""Managing people and single faces over HTTP: show, rename, merge, delete a face, pages, enrollment feedback."""

from __future__ import annotations

import datetime
from urllib.parse import quote

import pytest

from tests.conftest import face_photo
from tests.scenario import enroll
from tests.scenario import names
from tests.scenario import recognize
from tests.servers import upload


def test_person_lists_faces_with_time_and_external_id(client) -> None:
    before = datetime.datetime.now(datetime.UTC)
    response = client.post("/enroll", data={"name": "obama", "external_id": ["badge-1", "badge-2"], "image": [
        upload(face_photo("tests/test_images/obama.jpg")), upload(face_photo("tests/test_images/obama2.jpg"))]})
    assert response.status_code == 201, response.json
    ids = [face["id"] for face in response.json["faces"]]
    shown = client.get("/people/obama")
    assert shown.status_code == 200 and shown.json["name"] == "obama" and shown.json["face_count"] == 2
    assert sorted(face["id"] for face in shown.json["faces"]) == sorted(ids)
    by_id = {face["id"]: face for face in shown.json["faces"]}
    assert [by_id[face_id]["external_id"] for face_id in ids] == ["badge-1", "badge-2"]
    for face in shown.json["faces"]:
        created = datetime.datetime.fromisoformat(face["created_at"])
        assert face["created_at"].endswith("Z") and before - datetime.timedelta(seconds=1) <= created
    missing = client.get("/people/nobody")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "unknown_person"
    uneven = client.post("/enroll", data={"name": "obama", "external_id": ["only-one"], "image": [
        upload(face_photo("tests/test_images/obama.jpg")), upload(face_photo("tests/test_images/obama2.jpg"))]})
    assert uneven.status_code == 400 and uneven.json["error"]["code"] == "invalid_external_id"


def test_rename_then_recognize_gives_the_new_name(client) -> None:
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    renamed = client.patch("/people/obama", json={"name": "Barack Obama"})
    assert renamed.status_code == 200 and renamed.json == {"name": "Barack Obama", "face_count": 1}
    assert names(recognize(client, "examples/two_people.jpg")) == ["Barack Obama", "biden"]
    taken = client.patch("/people/biden", json={"name": "Barack Obama"})
    assert taken.status_code == 409 and taken.json["error"]["code"] == "name_taken"
    assert client.patch("/people/nobody", json={"name": "x"}).status_code == 404
    assert client.patch("/people/biden", json={"name": "  "}).json["error"]["code"] == "invalid_name"
    form = client.patch("/people/biden", data={"name": "x"})
    assert form.status_code == 400 and form.json["error"]["code"] == "invalid_json"


def test_merge_two_people(client) -> None:
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "barack", "obama3.jpg").status_code == 201
    merged = client.patch("/people/barack", json={"name": "obama", "merge": True})
    assert merged.status_code == 200 and merged.json == {"name": "obama", "face_count": 2}
    assert client.get("/people").json["people"] == [{"name": "obama", "face_count": 2}]
    assert names(recognize(client, "tests/test_images/obama2.jpg")) == ["obama"]


def test_deleting_one_face_keeps_the_others(client) -> None:
    response = enroll(client, "obama", "obama.jpg", "obama2.jpg")
    first, second = (face["id"] for face in response.json["faces"])
    before = recognize(client, "tests/test_images/obama3.jpg").json["faces"][0]
    deleted = client.delete(f"/people/obama/faces/{first}")
    assert deleted.status_code == 200 and deleted.json == {"name": "obama", "deleted_face": first, "face_count": 1}
    assert [face["id"] for face in client.get("/people/obama").json["faces"]] == [second]
    after = recognize(client, "tests/test_images/obama3.jpg").json["faces"][0]
    assert after["name"] == "obama" and after["distance"] >= before["distance"]
    again = client.delete(f"/people/obama/faces/{first}")
    assert again.status_code == 404 and again.json["error"]["code"] == "unknown_face"
    assert client.delete(f"/people/obama/faces/{second}").json["face_count"] == 0
    assert client.get("/people").json["people"] == []


def test_people_are_paged(client) -> None:
    encoding = [0.01] * 128
    for index in range(7):
        assert client.post("/enroll", json={"name": f"person {index}", "encodings": [encoding]}).status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/people", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})}).json
        seen += [person["name"] for person in page["people"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"person {index}" for index in range(7)] and pages == 3
    assert len(client.get("/people").json["people"]) == 7  # the default page holds 100
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}):
        assert client.get("/people", query_string=bad).json["error"]["code"] == "invalid_limit"
    assert client.get("/people", query_string={"cursor": "%%%"}).json["error"]["code"] == "invalid_cursor"


def test_names_with_slashes_can_be_managed(client) -> None:
    encoding = [0.01] * 128
    assert client.post("/enroll", json={"name": "AC/DC", "encodings": [encoding]}).status_code == 201
    path = "/people/" + quote("AC/DC", safe="")
    assert client.get(path).json["face_count"] == 1
    assert client.patch(path, json={"name": "ACDC"}).status_code == 200
    assert client.delete("/people/ACDC").json == {"name": "ACDC", "deleted_faces": 1}


@pytest.mark.store_independent
@pytest.mark.parametrize(("photo", "code"), [
    ("examples/obama-240p.jpg", "face_too_small"),  # a 62 px face
    ("examples/two_people.jpg", "multiple_faces"),
])
def test_enrollment_says_why_an_image_cannot_be_used(client, photo: str, code: str) -> None:
    response = client.post("/enroll", data={"name": "obama", "image": [
        upload(face_photo("tests/test_images/obama.jpg")), upload(face_photo(photo))]})
    assert response.status_code == 422 and response.json["error"]["code"] == code
    assert response.json["error"]["field"] == "image[1]"
    assert client.get("/people").json["people"] == []


def test_a_small_photo_with_a_large_enough_face_enrolls(client) -> None:
    response = client.post("/enroll", data={"name": "obama", "image": upload(face_photo("examples/obama_small.jpg"))})
    assert response.status_code == 201, response.json  # 320x240, a 107 px face


@pytest.mark.store_independent
@pytest.mark.parametrize("name", ["a/faces/b", "a/faces", "/faces"])
def test_a_name_cannot_hold_the_faces_segment(client, name: str) -> None:
    """A name whose faces' URLs would split inside it (``/people/a/faces/faces/<id>``) is refused."""
    response = client.post("/enroll", json={"name": name, "encodings": [[0.01] * 128]})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_name"


def test_every_face_of_a_name_with_slashes_can_be_deleted(client) -> None:
    for name in ("a/face", "faces/a", "a/fa/ces"):
        face_id = client.post("/enroll", json={"name": name, "encodings": [[0.01] * 128, [0.02] * 128]}).json[
            "faces"][0]["id"]
        response = client.delete(f"/people/{quote(name, safe='')}/faces/{face_id}")
        assert response.status_code == 200 and response.json["face_count"] == 1, (name, response.json)


def test_a_name_or_cursor_no_one_can_have_is_404_or_400_on_every_store(client) -> None:
    """PostgreSQL refuses a NUL in any text: such a name or cursor is answered before the store is asked."""
    assert client.post("/enroll", json={"name": "ab", "encodings": [[0.01] * 128]}).status_code == 201
    for method in ("get", "delete"):
        response = getattr(client, method)("/people/a%00b")
        assert response.status_code == 404 and response.json["error"]["code"] == "unknown_person", response.json
    response = client.patch("/people/a%00b", json={"name": "c"})
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_person"
    response = client.delete("/people/a%00b/faces/0123")
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_person"
    response = client.get("/people?cursor=AA")  # base64 of a NUL
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_cursor"
