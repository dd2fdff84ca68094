"""Collections and scoped keys, on both stores: a key reaches its collections and nothing else, not even the
knowledge of whether another collection exists; a read-only key recognizes and does nothing more."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from faceapi.config import Settings
from tests.conftest import TestClient
from tests.conftest import face_photo
from tests.conftest import test_images
from tests.scenario import names
from tests.servers import upload

KEYS = "root-key, key-a collections=a, key-b collections=b, door-a read-only collections=a"
ROOT, KEY_A, KEY_B, DOOR_A = ({"X-API-Key": key} for key in ("root-key", "key-a", "key-b", "door-a"))
_Call = tuple[str, str, Callable[[], dict[str, Any]]]


@pytest.fixture
def scoped(make_client) -> TestClient:
    return make_client(api_keys=Settings.from_env({"API_KEYS": KEYS}).api_keys)


def _encoding(client: TestClient, photo: str) -> list[float]:
    answer = client.post("/encode", data={"image": upload(test_images(photo))}, headers=ROOT)
    assert answer.status_code == 200, answer.json
    return answer.json["faces"][0]["encoding"]


def _calls(client: TestClient, collection_of_biden: str, face_id: str) -> dict[str, _Call]:
    """A valid request for each view of a collection, by view name: without a scope check, each would answer
    2xx, and the ones that write would change the collection."""
    biden = _encoding(client, "biden.jpg")
    export = client.get(f"/collections/{collection_of_biden}/export", headers=ROOT).get_data()
    return {
        "recognize": ("POST", "/recognize", lambda: {"json": {"encodings": [biden]}}),
        "verify": ("POST", "/verify", lambda: {"data": {"name": "biden", "image": upload(test_images("biden.jpg"))}}),
        "enroll": ("POST", "/enroll", lambda: {"json": {"name": "mallory", "encodings": [biden]}}),
        "people": ("GET", "/people", dict),
        "person": ("GET", "/people/biden", dict),
        "rename_person": ("PATCH", "/people/biden", lambda: {"json": {"name": "renamed"}}),
        "delete_person": ("DELETE", "/people/biden", dict),
        "delete_face": ("DELETE", f"/people/biden/faces/{face_id}", dict),
        "export": ("GET", "/export", dict),
        "import_file": ("POST", "/import", lambda: {"data": {"mode": "replace", "file": upload(export, "x.json")}}),
        "delete_collection": ("DELETE", "", dict),
    }


def _send(client: TestClient, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    if "data" in body:
        return client.post(path, data=body["data"], headers=headers)
    return client.open(path, method=method, headers=headers, **body)


def _enroll(client: TestClient, collection: str, name: str, photo: str, headers: dict[str, str]) -> Any:
    answer = client.post(f"/collections/{collection}/enroll", headers=headers,
                         data={"name": name, "image": upload(test_images(photo))})
    assert answer.status_code == 201, answer.json
    return answer.json


def _snapshot(client: TestClient, collection: str) -> dict[str, Any]:
    exported = json.loads(client.get(f"/collections/{collection}/export", headers=ROOT).get_data())
    del exported["exported_at"]
    return exported


def test_every_collection_endpoint_is_covered(scoped: TestClient, app) -> None:
    """The isolation tests below send `_calls`: every view served under /collections/<collection> has one."""
    enrolled = _enroll(scoped, "b", "biden", "biden.jpg", KEY_B)
    served = {rule.endpoint.rpartition(".")[2] for rule in app.url_map.iter_rules() if "<collection" in rule.rule}
    assert served == set(_calls(scoped, "b", enrolled["faces"][0]["id"]))


def test_a_key_of_one_collection_learns_nothing_of_another(scoped: TestClient) -> None:
    face_id = _enroll(scoped, "b", "biden", "biden.jpg", KEY_B)["faces"][0]["id"]
    _enroll(scoped, "a", "obama", "obama.jpg", KEY_A)
    before = _snapshot(scoped, "b")
    refusals = set()
    for view, (method, suffix, body) in _calls(scoped, "b", face_id).items():
        # b exists and "nowhere" does not: the same refusal. The unprefixed path is the default collection.
        for path in (f"/collections/b{suffix}", f"/collections/nowhere{suffix}", suffix):
            if not path:
                continue
            answer = _send(scoped, method, path, KEY_A, body())
            assert answer.status_code == 403, (view, path, answer.status_code, answer.get_data(as_text=True))
            error = answer.json["error"]
            assert error["code"] == "forbidden" and "biden" not in answer.get_data(as_text=True)
            refusals.add(error["message"])
    assert len(refusals) == 1 and "b" not in refusals.pop().split()
    assert _snapshot(scoped, "b") == before and before["people"][0]["name"] == "biden"
    assert scoped.get("/collections", headers=KEY_A).json == {
        "collections": [{"name": "a", "person_count": 1, "face_count": 1}], "next": None}
    assert [c["name"] for c in scoped.get("/collections", headers=ROOT).json["collections"]] == ["a", "b"]
    assert scoped.get("/metrics", headers=KEY_A).status_code == 403
    assert scoped.get("/metrics", headers=ROOT).status_code == 200
    # In its own collection, the same key is served.
    assert names(_recognize(scoped, "a", KEY_A)) == [None, "obama"]
    assert scoped.get("/collections/a/people", headers=KEY_A).json["people"] == [{"name": "obama", "face_count": 1}]


def test_a_read_only_key_recognizes_and_does_nothing_else(scoped: TestClient) -> None:
    face_id = _enroll(scoped, "a", "biden", "biden.jpg", KEY_A)["faces"][0]["id"]
    calls = _calls(scoped, "a", face_id)
    before = _snapshot(scoped, "a")
    for view, (method, suffix, body) in calls.items():
        answer = _send(scoped, method, f"/collections/a{suffix}", DOOR_A, body())
        if view in ("recognize", "verify"):
            assert answer.status_code == 200, (view, answer.json)
        else:
            assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden", (view, answer.json)
    assert _snapshot(scoped, "a") == before
    assert names(_recognize(scoped, "a", DOOR_A)) == [None, "biden"]
    verified = scoped.post("/collections/a/verify", headers=DOOR_A,
                           data={"name": "biden", "image": upload(test_images("biden.jpg"))})
    assert verified.json["match"] is True
    for path in ("/detect", "/encode"):
        assert scoped.post(path, data={"image": upload(test_images("biden.jpg"))}, headers=DOOR_A).status_code == 200
    for path in ("/collections", "/metrics"):
        assert scoped.get(path, headers=DOOR_A).status_code == 403
    assert _recognize(scoped, "b", DOOR_A).status_code == 403


def test_names_are_people_of_one_collection(client: TestClient) -> None:
    """The same name in two collections is two people; a recognition searches its collection only."""
    _enroll(client, "class-1", "obama", "obama.jpg", {})
    _enroll(client, "class-2", "obama", "biden.jpg", {})  # another person under the same name
    assert names(_recognize(client, "class-1", {})) == [None, "obama"]
    class_2 = _recognize(client, "class-2", {}).json["faces"]
    assert sorted((face["box"]["left"], face["name"]) for face in class_2)[1][1] == "obama"  # biden, on the right
    assert names(_recognize(client, "class-3", {})) == [None, None]  # no such collection: nobody is known
    assert names(_recognize(client, "default", {})) == [None, None]
    first = client.get("/collections?limit=1").json
    assert [c["name"] for c in first["collections"]] == ["class-1"] and first["next"]
    assert client.get(f"/collections?limit=1&cursor={first['next']}").json == {
        "collections": [{"name": "class-2", "person_count": 1, "face_count": 1}], "next": None}
    assert client.delete("/collections/class-1/people/obama").json["deleted_faces"] == 1
    assert client.get("/collections/class-2/people").json["people"] == [{"name": "obama", "face_count": 1}]
    assert client.get("/people").json["people"] == []
    assert [c["name"] for c in client.get("/collections").json["collections"]] == ["class-2"]  # class-1 is empty


def _recognize(client: TestClient, collection: str, headers: dict[str, str]) -> Any:
    return client.post(f"/collections/{collection}/recognize", headers=headers,
                       data={"image": upload(face_photo("examples/two_people.jpg"))})
