"""The Store contract, run against every backend (the `store_location` fixture)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
import subprocess
import sys

import numpy as np
import psycopg
import pytest

from faceapi.cli import main as faceapi_main
from faceapi.store import FaceRecord
from faceapi.store import NameTaken
from faceapi.store import StoreError
from faceapi.store import UnknownFace
from faceapi.store import UnknownPerson
from faceapi.store import open_store
from tests.conftest import MODEL
from tests.conftest import random_encodings


def test_contract(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    assert store.people() == [] and len(store.gallery()) == 0
    added = store.add_faces("ada", random_encodings(2, 1))
    assert added.name == "ada" and added.face_count == 2 and len(set(added.face_ids)) == 2
    assert store.add_faces("ada", random_encodings(1, 2)).face_count == 3
    store.add_faces("bob", random_encodings(1, 3))
    other = open_store(store_location, MODEL)  # another process's view
    assert [(p.name, p.face_count) for p in other.people()] == [("ada", 3), ("bob", 1)]
    gallery = other.gallery()
    assert sorted(gallery.names) == ["ada", "ada", "ada", "bob"]
    row = gallery.names.index("bob")
    np.testing.assert_array_equal(gallery.encodings[row], random_encodings(1, 3)[0])
    assert store.remove_person("ada") == 3
    assert [p.name for p in other.people()] == ["bob"] and other.gallery().names == ("bob",)
    with pytest.raises(UnknownPerson):
        other.remove_person("ada")
    store.close()
    other.close()


def test_concurrent_adds_from_two_handles(store_location: str) -> None:
    stores = [open_store(store_location, MODEL) for _ in range(2)]

    def add(index: int) -> None:
        stores[index % 2].add_faces(f"p{index % 5}", random_encodings(1, index))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(40)))
    assert [(p.name, p.face_count) for p in stores[0].people()] == [(f"p{i}", 8) for i in range(5)]
    assert len(stores[1].gallery()) == 40


def test_import_skips_known_ids(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    records = [FaceRecord(f"id{i}", "ada", random_encodings(1, i)[0]) for i in range(3)]
    assert store.import_faces(records) == 3
    assert store.import_faces(records) == 0
    assert [r.face_id for r in store.faces()] == ["id0", "id1", "id2"]


def test_pickle_postgres_pickle_round_trip(tmp_path, pg_url: str, capsys) -> None:
    from faceapi.models import ModelPaths
    from faceapi.models import model_id

    models = model_id(ModelPaths.from_package())
    source = str(tmp_path / "source.pkl")
    original = open_store(source, models)
    original.add_faces("ada", random_encodings(3, 1))
    original.add_faces("bob", random_encodings(2, 2))
    assert faceapi_main(["transfer", source, pg_url]) == 0
    assert faceapi_main(["transfer", source, pg_url]) == 0  # twice: nothing duplicated
    assert "added 0 new" in capsys.readouterr().out
    back = str(tmp_path / "back.pkl")
    assert faceapi_main(["transfer", pg_url, back]) == 0
    before = {r.face_id: (r.name, r.encoding.tobytes()) for r in original.faces()}
    after = {r.face_id: (r.name, r.encoding.tobytes()) for r in open_store(back, models).faces()}
    assert after == before and len(after) == 5


def test_transfer_copies_every_collection_or_the_one_named(tmp_path, pg_url: str, capsys) -> None:
    from faceapi.models import ModelPaths
    from faceapi.models import model_id

    models = model_id(ModelPaths.from_package())
    source = str(tmp_path / "source.pkl")
    original = open_store(source, models)
    original.add_faces("ada", random_encodings(2, 1), collection="class-1")
    original.add_faces("ada", random_encodings(1, 2), collection="class-2")
    original.add_faces("bob", random_encodings(1, 3))
    assert faceapi_main(["transfer", source, pg_url]) == 0
    assert "read 4 faces, added 4 new" in capsys.readouterr().out
    copy = open_store(pg_url, models)
    assert [(c.name, c.face_count) for c in copy.collections()] == [("class-1", 2), ("class-2", 1), ("default", 1)]
    for collection in ("class-1", "class-2", "default"):
        assert ({r.face_id: r.encoding.tobytes() for r in copy.faces(collection=collection)}
                == {r.face_id: r.encoding.tobytes() for r in original.faces(collection=collection)})
    one = str(tmp_path / "one.pkl")
    assert faceapi_main(["transfer", pg_url, one, "--collection", "class-2"]) == 0
    assert [(c.name, c.face_count) for c in open_store(one, models).collections()] == [("class-2", 1)]


def test_transfer_command_refuses_missing_and_foreign_sources(tmp_path) -> None:
    """The installed command, from an unrelated directory: typos and non-stores are errors, and nothing is written."""
    command = [str(pathlib.Path(sys.executable).with_name("faceapi")), "transfer"]
    for missing in ("../data/face.pkl", "/nonexistent/dir/x.pkl"):
        result = subprocess.run([*command, missing, "copy.pkl"], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2 and "no store file at" in result.stderr, result.stderr
    (tmp_path / "notes.txt").write_text("not a store")
    result = subprocess.run([*command, "notes.txt", "copy.pkl"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "not a valid store file" in result.stderr and ".bak" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert not pathlib.Path("/nonexistent").exists()


def test_transfer_closes_the_source_when_the_destination_fails(tmp_path, pg_url: str) -> None:
    from faceapi.transfer import transfer

    def faceapi_connections() -> int:
        with psycopg.connect(pg_url) as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'faceapi'"
            return conn.execute(query).fetchone()[0]

    from faceapi.models import ModelPaths
    from faceapi.models import model_id

    with contextlib.closing(open_store(pg_url, model_id(ModelPaths.from_package()))) as source:
        source.add_faces("ada", random_encodings(2, 1))
    (tmp_path / "notes.txt").write_text("not a store")
    before = faceapi_connections()
    with pytest.raises(StoreError, match="not a valid store file") as refused:
        transfer(pg_url, str(tmp_path / "notes.txt"))
    assert refused.value is not None and faceapi_connections() == before


def test_transfer_command_works_from_any_directory(tmp_path) -> None:
    from faceapi.models import ModelPaths
    from faceapi.models import model_id

    store = open_store(str(tmp_path / "faces.pkl"), model_id(ModelPaths.from_package()))
    store.add_faces("ada", random_encodings(2, 1))
    command = [sys.executable, "-m", "faceapi.cli", "transfer", "faces.pkl", "backup/copy.pkl"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "read 2 faces, added 2 new" in result.stdout, result.stderr
    assert (tmp_path / "backup" / "copy.pkl").is_file()


def test_people_are_paged_in_code_point_order(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    for index, name in enumerate(["bob", "Zoë", "ada", "Émile", "zed"]):
        store.add_faces(name, random_encodings(index + 1, index))
    everyone = [(p.name, p.face_count) for p in store.people()]
    assert everyone == [("Zoë", 2), ("ada", 3), ("bob", 1), ("zed", 5), ("Émile", 4)]
    assert [p.name for p in store.people(limit=2)] == ["Zoë", "ada"]
    assert [p.name for p in store.people(limit=2, after="ada")] == ["bob", "zed"]
    assert [p.name for p in store.people(limit=2, after="zed")] == ["Émile"]
    assert store.people(limit=2, after="Émile") == []


def test_person_faces_keep_time_and_external_id(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    first = store.add_faces("ada", random_encodings(2, 1), external_ids=["badge-1", None])
    second = store.add_faces("ada", random_encodings(1, 2))
    faces = open_store(store_location, MODEL).person_faces("ada")
    assert [f.face_id for f in faces[2:]] == list(second.face_ids)
    assert sorted(f.face_id for f in faces[:2]) == sorted(first.face_ids)
    by_id = {f.face_id: f for f in faces}
    assert by_id[first.face_ids[0]].external_id == "badge-1" and by_id[first.face_ids[1]].external_id is None
    assert all(f.created_at is not None and f.created_at.utcoffset().total_seconds() == 0 for f in faces)
    assert faces[0].created_at <= faces[2].created_at
    np.testing.assert_array_equal(by_id[second.face_ids[0]].encoding, random_encodings(1, 2)[0])
    with pytest.raises(UnknownPerson):
        store.person_faces("nobody")


def test_rename_and_merge(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    store.add_faces("ada", random_encodings(2, 1))
    store.add_faces("bob", random_encodings(1, 2))
    assert store.rename_person("ada", "Ada Lovelace") == 2
    assert [p.name for p in store.people()] == ["Ada Lovelace", "bob"]
    assert sorted(open_store(store_location, MODEL).gallery().names) == ["Ada Lovelace"] * 2 + ["bob"]
    with pytest.raises(NameTaken):
        store.rename_person("bob", "Ada Lovelace")
    assert store.rename_person("bob", "bob") == 1
    assert store.rename_person("bob", "Ada Lovelace", merge=True) == 3
    assert [(p.name, p.face_count) for p in store.people()] == [("Ada Lovelace", 3)]
    with pytest.raises(UnknownPerson):
        store.rename_person("bob", "carol")


def test_remove_one_face(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    kept, gone = store.add_faces("ada", random_encodings(2, 1)).face_ids
    store.add_faces("bob", random_encodings(1, 2))
    assert store.remove_face("ada", gone) == 1
    assert [f.face_id for f in store.person_faces("ada")] == [kept]
    np.testing.assert_array_equal(store.person_faces("ada")[0].encoding, random_encodings(2, 1)[0])
    with pytest.raises(UnknownFace):
        store.remove_face("ada", gone)
    with pytest.raises(UnknownFace):
        store.remove_face("bob", kept)  # another person's face
    assert store.remove_face("ada", kept) == 0
    assert [p.name for p in store.people()] == ["bob"] and store.gallery().names == ("bob",)


def test_import_replace_swaps_everything(store_location: str) -> None:
    store = open_store(store_location, MODEL)
    store.add_faces("old", random_encodings(2, 1))
    records = [FaceRecord(f"id{i}", "new", random_encodings(1, 10 + i)[0], external_id=f"x{i}") for i in range(2)]
    assert store.import_faces(records, replace=True) == 2
    assert [(p.name, p.face_count) for p in store.people()] == [("new", 2)]
    assert [f.external_id for f in store.faces()] == ["x0", "x1"]
