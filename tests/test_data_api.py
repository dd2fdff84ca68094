"""Export and import over HTTP, on both stores, and between them."""

from __future__ import annotations

import json

import pytest

from faceapi.config import Settings
from tests.conftest import client_of
from tests.scenario import enroll
from tests.scenario import recognize
from tests.servers import upload

PHOTOS = ["examples/two_people.jpg", "tests/test_images/obama2.jpg", "examples/lin-manuel-miranda.png",
          "examples/knn_examples/test/obama_and_biden.jpg"]


def _answers(client) -> list:
    return [recognize(client, photo, top_k="3").json for photo in PHOTOS]


def _import(client, document: dict | bytes, mode: str | None = None):
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    form = {"file": upload(raw, "export.json"), **({"mode": mode} if mode else {})}
    return client.post("/import", data=form)


def _enroll_three(client) -> None:
    assert enroll(client, "obama", "obama.jpg", "obama3.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    assert client.post("/enroll", json={"name": "Zoë", "encodings": [[0.02] * 128],
                                        "external_ids": ["z-1"]}).status_code == 201


def test_export_wipe_import_gives_identical_answers(client) -> None:
    _enroll_three(client)
    before = _answers(client)
    exported = client.get("/export")
    assert exported.status_code == 200 and exported.mimetype == "application/json"
    assert "attachment" in exported.headers["Content-Disposition"]
    document = json.loads(exported.get_data())
    assert document["format"] == "faceapi-export" and document["version"] == 1
    assert [p["name"] for p in document["people"]] == ["Zoë", "biden", "obama"]
    assert [len(p["faces"]) for p in document["people"]] == [1, 1, 2]
    for person in [p["name"] for p in client.get("/people").json["people"]]:
        assert client.delete(f"/people/{person}").status_code == 200
    assert recognize(client, "tests/test_images/obama2.jpg").json["faces"][0]["name"] is None
    loaded = _import(client, document)
    assert loaded.status_code == 200, loaded.json
    assert loaded.json == {"mode": "merge", "people": 3, "faces": 4, "added": 4}
    assert _answers(client) == before
    assert json.loads(client.get("/export").get_data())["people"] == document["people"]
    assert _import(client, document).json["added"] == 0  # merge: known face ids are skipped


def test_replace_makes_the_store_hold_exactly_the_file(client) -> None:
    _enroll_three(client)
    document = json.loads(client.get("/export").get_data())
    document["people"] = [p for p in document["people"] if p["name"] == "biden"]
    assert enroll(client, "someone", "obama2.jpg").status_code == 201
    replaced = _import(client, document, "replace")
    assert replaced.status_code == 200 and replaced.json["added"] == 1
    assert client.get("/people").json["people"] == [{"name": "biden", "face_count": 1}]


def _valid_document(client) -> dict:
    _enroll_three(client)
    return json.loads(client.get("/export").get_data())


def _breakages() -> list[tuple[str, object, int, str, str]]:
    """(id, change to a valid export, status, code, field)."""
    def set_path(*path_and_value):
        *path, value = path_and_value

        def change(document):
            target = document
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return change

    return [
        ("not json", b"{nope", 400, "invalid_import", "file"),
        ("a pickle", b"\x80\x04\x95", 400, "invalid_import", "file"),
        ("other format", set_path("format", "something"), 400, "invalid_import", "file"),
        ("newer version", set_path("version", 2), 400, "invalid_import", "version"),
        ("other model", set_path("model", "dlib-resnet-v1+5pt:0000000000000000"), 422, "foreign_model", "model"),
        ("short encoding", set_path("people", 2, "faces", 1, "encoding", [0.1] * 127), 400, "invalid_import",
         "people[2].faces[1].encoding"),
        ("nan encoding", set_path("people", 1, "faces", 0, "encoding", [float("nan")] * 128), 400, "invalid_import",
         "people[1].faces[0].encoding"),
        ("bad name", set_path("people", 0, "name", ""), 400, "invalid_import", "people[0].name"),
        ("bad id", set_path("people", 0, "faces", 0, "id", "../x"), 400, "invalid_import", "people[0].faces[0].id"),
        ("bad time", set_path("people", 0, "faces", 0, "created_at", "yesterday"), 400, "invalid_import",
         "people[0].faces[0].created_at"),
        ("time out of range in UTC", set_path("people", 0, "faces", 0, "created_at", "0001-01-01T00:00:00+01:00"),
         400, "invalid_import", "people[0].faces[0].created_at"),
        ("duplicate id", lambda d: d["people"][2]["faces"].append(d["people"][2]["faces"][0]), 400,
         "invalid_import", "people[2].faces[2].id"),
    ]


@pytest.mark.store_independent
@pytest.mark.parametrize(("change", "status", "code", "field"), [row[1:] for row in _breakages()],
                         ids=[row[0] for row in _breakages()])
def test_import_refuses_bad_files_whole(client, change, status: int, code: str, field: str) -> None:
    document = _valid_document(client)
    before = client.get("/export").get_data()
    if callable(change):
        change(document)
        raw = json.dumps(document).encode()  # NaN is written as NaN, which our JSON reader refuses
    else:
        raw = change
    for person in [p["name"] for p in client.get("/people").json["people"]]:
        client.delete(f"/people/{person}")
    response = _import(client, raw, "replace")
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code and response.json["error"]["field"] == field
    assert client.get("/people").json["people"] == []  # nothing of it was loaded
    assert before  # (the export itself was fine)


@pytest.mark.store_independent
def test_import_needs_a_file_and_a_known_mode(client) -> None:
    assert client.post("/import", data={"mode": "merge"}).json["error"]["code"] == "missing_file"
    response = _import(client, b"{}", "append")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_mode"


def test_pickle_to_postgres_and_back_unchanged(tmp_path, pg_url: str, engine) -> None:
    pickle_client = client_of(Settings(store_path=str(tmp_path / "a.pkl")), engine)
    postgres_client = client_of(Settings(database_url=pg_url), engine)
    back_client = client_of(Settings(store_path=str(tmp_path / "b.pkl")), engine)
    _enroll_three(pickle_client)
    original = json.loads(pickle_client.get("/export").get_data())
    assert _import(postgres_client, original).json["added"] == 4
    via_postgres = json.loads(postgres_client.get("/export").get_data())
    assert _import(back_client, via_postgres).json["added"] == 4
    returned = json.loads(back_client.get("/export").get_data())
    assert via_postgres["people"] == original["people"] and returned["people"] == original["people"]
    assert _answers(back_client) == _answers(pickle_client) == _answers(postgres_client)
