"""The pickle store under concurrent writers, crashes and hostile files."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import pathlib
import pickle
import signal
import struct
import time
import zlib

import numpy as np
import pytest

from faceapi.store import StoreError
from faceapi.store import UnknownPerson
from faceapi.store.pickle_file import PickleStore
from faceapi.store.pickle_file import store as pickle_store
from tests.conftest import MODEL
from tests.conftest import random_encodings


def _enroll_many(path: str, writer: int, count: int) -> None:
    store = PickleStore(path, MODEL)
    for index in range(count):
        store.add_faces(f"writer{writer}", random_encodings(1, writer * 1000 + index))
        store.add_faces("shared", random_encodings(1, writer * 1000 + index + 500))


def test_round_trip_and_contract(tmp_path: pathlib.Path) -> None:
    store = PickleStore(tmp_path / "faces.pkl", MODEL)
    assert store.people() == [] and len(store.gallery()) == 0
    added = store.add_faces("ada", random_encodings(2, 1))
    assert added.face_count == 2 and len(set(added.face_ids)) == 2
    assert store.add_faces("ada", random_encodings(1, 2)).face_count == 3
    reopened = PickleStore(tmp_path / "faces.pkl", MODEL)
    gallery = reopened.gallery()
    assert gallery.names == ("ada",) * 3
    np.testing.assert_array_equal(gallery.encodings, np.vstack([random_encodings(2, 1), random_encodings(1, 2)]))
    assert reopened.remove_person("ada") == 3
    with pytest.raises(UnknownPerson):
        reopened.remove_person("ada")
    assert store.people() == []  # the first instance sees the other's write


def test_concurrent_writers_lose_nothing(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "faces.pkl")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_enroll_many, args=(path, writer, 15)) for writer in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    people = {person.name: person.face_count for person in PickleStore(path, MODEL).people()}
    assert people == {"shared": 60, **{f"writer{w}": 15 for w in range(4)}}
    assert len(PickleStore(path, MODEL).gallery()) == 120


def _write_forever(path: str) -> None:
    store = PickleStore(path, MODEL)
    batch = random_encodings(500, 7)
    while True:
        store.add_faces("bulk", batch)


def test_sigkill_during_writes_leaves_a_loadable_store(tmp_path: pathlib.Path) -> None:
    """Kill a writer at random moments of its writes (a growing, multi-megabyte file) many times."""
    path = tmp_path / "faces.pkl"
    context = multiprocessing.get_context("fork")
    rng = np.random.default_rng(3)
    last_count = 0
    for _ in range(12):
        writer = context.Process(target=_write_forever, args=(str(path),))
        writer.start()
        time.sleep(0.2 + rng.uniform(0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        count = sum(person.face_count for person in PickleStore(path, MODEL).people())
        assert count % 500 == 0 and count >= last_count
        last_count = count
    assert last_count > 0
    PickleStore(path, MODEL).add_faces("after", random_encodings(1, 9))  # a writer after the crash cleans up
    assert not list(tmp_path.glob(".faces.pkl.*.tmp"))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_with_code_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "faces.pkl"
    path.write_bytes(pickle.dumps({"format": 1, "model": MODEL, "people": {"x": _RunsCode()}}))
    with pytest.raises(StoreError, match="only plain data"):
        PickleStore(path, MODEL)
    assert not (tmp_path / "pwned").exists()


def test_code_inside_an_older_collection_or_a_journal_record_is_refused(tmp_path: pathlib.Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Format 3 pickled each collection's people on their own, and format 4 pickles each journal record:
    those go through the same unpickler."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "faces.pkl"
    inner = pickle.dumps({"x": _RunsCode()})
    path.write_bytes(pickle.dumps({"format": 3, "model": MODEL,
                                   "collections": {"c": {"people": 1, "faces": 1, "data": inner}}}))
    with pytest.raises(StoreError, match="only plain data"):
        PickleStore(path, MODEL)
    path.unlink()
    PickleStore(path, MODEL).add_faces("ada", random_encodings(1, 1))
    payload = pickle.dumps({"op": "rename", "c": "default", "name": "ada", "to": _RunsCode()})
    with open(tmp_path / "faces.pkl.journal", "ab") as journal:
        journal.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    with pytest.raises(StoreError, match="only plain data"):
        PickleStore(path, MODEL)
    assert not (tmp_path / "pwned").exists()


def test_readers_apply_what_others_append(tmp_path: pathlib.Path) -> None:
    """A write appends to the journal and leaves the snapshot alone; a reader applies the new record to
    what it holds (a collection nobody wrote to keeps its gallery object), and its matrix is a read-only
    map of the shared file, not a copy."""
    reloads: list[int] = []
    writer = PickleStore(tmp_path / "faces.pkl", MODEL)
    writer.add_faces("ada", random_encodings(3, 1), collection="a")
    writer.add_faces("bob", random_encodings(2, 2), collection="b")
    reader = PickleStore(tmp_path / "faces.pkl", MODEL, on_reload=lambda: reloads.append(1))
    gallery_a = reader.gallery(collection="a")
    assert gallery_a.names == ("ada",) * 3 and not gallery_a.encodings.flags.writeable
    assert isinstance(_base_of(gallery_a.encodings), mmap.mmap)
    snapshot = (tmp_path / "faces.pkl").stat()
    journal_size = (tmp_path / "faces.pkl.journal").stat().st_size
    writer.add_faces("bea", random_encodings(1, 3), collection="b")
    assert (tmp_path / "faces.pkl").stat().st_ino == snapshot.st_ino
    assert (tmp_path / "faces.pkl.journal").stat().st_size > journal_size
    before = len(reloads)
    assert reader.gallery(collection="a") is gallery_a
    assert sorted(reader.gallery(collection="b").names) == ["bea", "bob", "bob"] and len(reloads) == before + 1
    writer.add_faces("ada", random_encodings(1, 4), collection="a")
    assert len(reader.gallery(collection="a")) == 4
    np.testing.assert_array_equal(reader.gallery(collection="a").encodings[3], random_encodings(1, 4)[0])


def _base_of(array: np.ndarray) -> object:
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_the_journal_is_folded_and_removed_rows_compacted(tmp_path: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the journal outgrows the snapshot it is folded into a new one; once a quarter of a matrix file's
    rows are removed it is rewritten without them, and the old file goes."""
    monkeypatch.setattr(pickle_store, "JOURNAL_FOLD_BYTES", 4096)
    monkeypatch.setattr(pickle_store, "MATRIX_COMPACT_ROWS", 16)
    store = PickleStore(tmp_path / "faces.pkl", MODEL)
    reader = PickleStore(tmp_path / "faces.pkl", MODEL)
    for index in range(40):
        store.add_faces(f"p{index % 8}", random_encodings(4, index))
    assert (tmp_path / "faces.pkl.journal").stat().st_size <= 4096 + 4096
    assert [(p.name, p.face_count) for p in reader.people()] == [(f"p{i}", 20) for i in range(8)]
    first_matrix = list(tmp_path.glob("faces.pkl.*.f32"))
    kept = {face.face_id: face.encoding for face in store.faces() if face.name not in ("p0", "p1")}
    store.remove_person("p0")  # 20 of 160 rows: kept, zeroed
    assert list(tmp_path.glob("faces.pkl.*.f32")) == first_matrix
    store.remove_person("p1")  # 40 of 160: the file is rewritten
    matrices = list(tmp_path.glob("faces.pkl.*.f32"))
    assert len(matrices) == 1 and matrices != first_matrix and matrices[0].stat().st_size == 120 * 128 * 4
    gallery = reader.gallery()
    assert sorted(set(gallery.names)) == [f"p{i}" for i in range(2, 8)] and len(gallery) == 120
    after = {face.face_id: face.encoding for face in PickleStore(tmp_path / "faces.pkl", MODEL).faces()}
    assert after.keys() == kept.keys() and all(np.array_equal(after[key], kept[key]) for key in kept)
    store.remove_face("p3", next(iter(f.face_id for f in store.person_faces("p3"))))
    assert len(reader.gallery()) == 119 and reader.gallery().encodings.shape[0] == 120  # a removed row, kept


def test_foreign_model_and_format_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "faces.pkl"
    PickleStore(path, "other-model").add_faces("ada", random_encodings(1, 1))
    with pytest.raises(StoreError, match="other-model"):
        PickleStore(path, MODEL)
    store = PickleStore(tmp_path / "good.pkl", MODEL)
    (tmp_path / "good.pkl").write_bytes(pickle.dumps(["not", "a", "store"]))  # replaced behind its back
    with pytest.raises(StoreError, match="format"):
        store.gallery()
    with pytest.raises(StoreError):
        store.add_faces("eve", random_encodings(1, 1))  # never overwrites what it cannot read
    assert pickle.loads((tmp_path / "good.pkl").read_bytes()) == ["not", "a", "store"]


def _old_format_bytes(pipeline, version: int) -> bytes:
    """A store file as the format-1, 2 or 3 store wrote it (``pickle.dumps`` of plain data, highest
    protocol), of the labelled photos: obama.jpg and obama2.jpg as "Barack Obama", biden.jpg as "Joe Biden".
    Format 2 adds creation times (one unknown, as for faces upgraded from format 1) and external ids;
    format 3 holds collections, each pickled on its own."""
    from faceapi.store import new_face_id
    from tests.conftest import test_images

    def encodings(*photos: str) -> bytes:
        found = [pipeline.find_one_face(test_images(photo).read_bytes()).faces[0].encoding for photo in photos]
        return np.stack(found).astype("<f4").tobytes()

    people = {
        "Barack Obama": {"ids": [new_face_id(), new_face_id()], "encodings": encodings("obama.jpg", "obama2.jpg")},
        "Joe Biden": {"ids": [new_face_id()], "encodings": encodings("biden.jpg")},
    }
    if version >= 2:
        people["Barack Obama"].update(created=[None, 1_700_000_000_000_000], external_ids=["o/1.jpg", None])
        people["Joe Biden"].update(created=[1_700_000_000_000_001], external_ids=[None])
    if version == 3:
        entry = {"people": 2, "faces": 3, "data": pickle.dumps(people, protocol=pickle.HIGHEST_PROTOCOL)}
        return pickle.dumps({"format": 3, "model": pipeline.engine.model_id, "collections": {"default": entry}},
                            protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps({"format": version, "model": pipeline.engine.model_id, "people": people},
                        protocol=pickle.HIGHEST_PROTOCOL)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_format_store_is_upgraded_in_place(tmp_path: pathlib.Path, pipeline, engine, version: int) -> None:
    """Opening a store of format 1, 2 or 3 upgrades it in place to format 4, every face in the default
    collection, times and external ids kept; the old file stays as the backup until the first removal."""
    from faceapi import create_app
    from faceapi.config import Settings
    from tests.scenario import names
    from tests.scenario import recognize

    old_bytes = _old_format_bytes(pipeline, version)
    path = tmp_path / "faces.pkl"
    path.write_bytes(old_bytes)
    old = pickle.loads(old_bytes)  # our own bytes: plain data
    if version == 3:
        old["people"] = pickle.loads(old["collections"]["default"]["data"])
    store = PickleStore(path, engine.model_id)
    new = pickle.loads(path.read_bytes())
    assert new["format"] == 4 and (tmp_path / "faces.pkl.bak").read_bytes() == old_bytes
    assert list(new["collections"]) == ["default"] and "people" not in new
    for name, person in old["people"].items():
        faces = store.person_faces(name)
        assert {f.face_id: f.encoding.tobytes() for f in faces} == dict(
            zip(person["ids"], (row.tobytes() for row in np.frombuffer(person["encodings"], "<f4").reshape(-1, 128)),
                strict=True))
        by_id = {f.face_id: f for f in faces}
        for index, face_id in enumerate(person["ids"]):
            created = person.get("created", [None] * len(person["ids"]))[index]
            assert (by_id[face_id].created_at is None) == (created is None)
            assert by_id[face_id].external_id == person.get("external_ids", [None] * len(person["ids"]))[index]
    PickleStore(path, engine.model_id)  # a second opening finds nothing to upgrade
    assert pickle.loads(path.read_bytes()) == new

    client = create_app(Settings(store_path=str(path), workers=1), engine=engine).test_client()
    assert names(recognize(client, "examples/two_people.jpg")) == ["Barack Obama", "Joe Biden"]
    assert client.get("/people").json["people"] == [{"name": "Barack Obama", "face_count": 2},
                                                    {"name": "Joe Biden", "face_count": 1}]
    assert client.get("/collections").json["collections"] == [
        {"name": "default", "person_count": 2, "face_count": 3}]
    assert client.get("/collections/other/people").json["people"] == []
    assert client.delete("/people/Joe Biden").status_code == 200
    assert not (tmp_path / "faces.pkl.bak").exists()  # it held the person just removed


def _open_store(path: str, model: str) -> None:
    PickleStore(path, model)


def test_two_processes_opening_a_format_2_store_upgrade_it_once(tmp_path: pathlib.Path, pipeline) -> None:
    old_bytes = _old_format_bytes(pipeline, 2)
    path = tmp_path / "faces.pkl"
    path.write_bytes(old_bytes)
    model = pipeline.engine.model_id
    context = multiprocessing.get_context("spawn")
    openers = [context.Process(target=_open_store, args=(str(path), model)) for _ in range(2)]
    for process in openers:
        process.start()
    for process in openers:
        process.join(60)
        assert process.exitcode == 0
    assert pickle.loads(path.read_bytes())["format"] == 4
    # Written once: the backup is still the format-2 file, not a second copy of the upgraded one.
    assert (tmp_path / "faces.pkl.bak").read_bytes() == old_bytes
    assert sum(p.face_count for p in PickleStore(path, model).people()) == 3


def test_an_older_file_put_back_while_running_is_upgraded_not_overwritten(tmp_path: pathlib.Path, pipeline) -> None:
    """An administrator restores a format-2 file under a running service: its next read or write upgrades it,
    never writes an empty store over it."""
    path = tmp_path / "faces.pkl"
    store = PickleStore(path, pipeline.engine.model_id)
    store.add_faces("someone", random_encodings(1, 1))
    path.write_bytes(_old_format_bytes(pipeline, 2))
    assert [(p.name, p.face_count) for p in store.people()] == [("Barack Obama", 2), ("Joe Biden", 1)]
    store.add_faces("Joe Biden", random_encodings(1, 2))
    assert [(p.name, p.face_count) for p in PickleStore(path, pipeline.engine.model_id).people()] == [
        ("Barack Obama", 2), ("Joe Biden", 2)]


def test_a_write_that_finds_an_older_file_upgrades_it_without_waiting_for_itself(tmp_path: pathlib.Path,
                                                                               pipeline) -> None:
    """The write holds the lock when it finds the format-2 file an administrator put back: the upgrade runs
    under that same lock (it once took it again on another descriptor, and the worker hung for ever)."""
    path = tmp_path / "faces.pkl"
    model = pipeline.engine.model_id
    store = PickleStore(path, model)
    store.add_faces("someone", random_encodings(1, 1))
    store._state = None  # as in a process that has not looked since: its first act is a write
    path.write_bytes(_old_format_bytes(pipeline, 2))
    writer = multiprocessing.get_context("fork").Process(target=store.add_faces,
                                                         args=("Joe Biden", random_encodings(1, 2)))
    writer.start()
    writer.join(120)  # a generous bound: the write takes milliseconds, a hang never ends
    if writer.is_alive():
        writer.kill()
    assert writer.exitcode == 0
    assert [(p.name, p.face_count) for p in PickleStore(path, model).people()] == [
        ("Barack Obama", 2), ("Joe Biden", 2)]


def test_transfer_reads_an_older_file_without_upgrading_it(tmp_path: pathlib.Path, pipeline) -> None:
    """A copy's source may still be served by the older version: it is read as it is, not upgraded in place."""
    from faceapi.transfer import transfer

    source = tmp_path / "old.pkl"
    old_bytes = _old_format_bytes(pipeline, 2)
    source.write_bytes(old_bytes)
    assert transfer(str(source), str(tmp_path / "copy" / "new.pkl")) == (3, 3)
    assert source.read_bytes() == old_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy", "old.pkl"]  # no .bak, journal or matrix
    assert [(p.name, p.face_count) for p in PickleStore(tmp_path / "copy" / "new.pkl",
                                                         pipeline.engine.model_id).people()] == [
        ("Barack Obama", 2), ("Joe Biden", 1)]
