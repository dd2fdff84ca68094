"""The pickle store killed at every step of a write: each file operation in turn is where the process dies
(and each file write also dies half done). After every death the store opens with exactly the contents
before the write or exactly those after it, takes a new write, and holds no byte of an erased face."""

from __future__ import annotations

import collections
import multiprocessing
import os
import pathlib
import pickle
import shutil
import tempfile
from collections.abc import Callable

import numpy as np
import pytest

from faceapi.store.pickle_file import PickleStore
from faceapi.store.pickle_file import journal as pickle_journal
from faceapi.store.pickle_file import store as pickle_store
from tests.conftest import MODEL
from tests.conftest import random_encodings

# The file operations a write goes through: one of them is where the writer dies.
_STEPS = ("pwrite", "fsync", "ftruncate", "replace", "link", "unlink", "mkstemp")
_KILLED = 86


def _enroll(store: PickleStore) -> None:
    store.add_faces("p1", random_encodings(3, 100), external_ids=["new-1", None, "new-3"])


def _enroll_elsewhere(store: PickleStore) -> None:
    store.add_faces("zoe", random_encodings(2, 101), collection="class-2")


def _remove(store: PickleStore) -> None:
    store.remove_person("p2")


def _import_replace(store: PickleStore) -> None:
    store.import_faces(store.faces()[:3], replace=True)


ACTIONS: dict[str, Callable[[PickleStore], None]] = {
    "enroll": _enroll, "enroll in a new collection": _enroll_elsewhere, "remove a person": _remove,
    "import replacing everything": _import_replace,
}


def _prepare(directory: pathlib.Path) -> pathlib.Path:
    path = directory / "faces.pkl"
    store = PickleStore(path, MODEL)
    for index in range(6):
        store.add_faces(f"p{index % 3}", random_encodings(4, index), external_ids=[f"x{index}", None, None, None])
    store.add_faces("ada", random_encodings(1, 50), collection="class-1")
    return path


def _contents(path: pathlib.Path) -> collections.Counter:
    """Everything a store holds but the ids and times a write draws afresh."""
    store = PickleStore(path, MODEL)
    return collections.Counter(
        (summary.name, face.name, face.encoding.tobytes(), face.external_id)
        for summary in store.collections() for face in store.faces(collection=summary.name))


def _die_at(step: int, torn: bool, path: str, action: str, small: bool) -> None:
    """In a forked child: run ``action``, dying just before the ``step``-th file operation (or, if ``torn``
    and that operation writes, after writing half of it)."""
    calls = 0
    if small:  # every write also folds the journal and rewrites the matrix files
        pickle_store.JOURNAL_FOLD_BYTES = 0
        pickle_store.MATRIX_COMPACT_ROWS = 1
    for name in _STEPS:
        module = tempfile if name == "mkstemp" else os
        real = getattr(module, name)

        def dying(*args, real=real, name=name, **kwargs):
            nonlocal calls
            calls += 1
            if calls == step:
                if torn and name == "pwrite":
                    real(args[0], bytes(args[1])[:max(1, len(args[1]) // 2)], args[2])
                os._exit(_KILLED)
            return real(*args, **kwargs)

        setattr(module, name, dying)
    ACTIONS[action](PickleStore(path, MODEL))
    os._exit(0)


def _erased_encodings(action: str, before: collections.Counter, after: collections.Counter) -> list[bytes]:
    gone = before - after
    return [encoding for (_, _, encoding, _) in gone.elements()] if action != "enroll" else []


@pytest.mark.parametrize("small", [False, True], ids=["journal", "fold-and-compact"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_killed_at_every_step(tmp_path: pathlib.Path, action: str, small: bool) -> None:
    prepared = _prepare(tmp_path / "prepared")
    before = _contents(prepared)
    reference = tmp_path / "reference"
    shutil.copytree(prepared.parent, reference)
    ACTIONS[action](PickleStore(reference / "faces.pkl", MODEL))
    after = _contents(reference / "faces.pkl")
    assert after != before
    erased = _erased_encodings(action, before, after)
    context = multiprocessing.get_context("fork")
    outcomes = collections.Counter()
    for step in range(1, 200):
        for torn in (False, True):
            trial = tmp_path / f"step{step}{'t' if torn else ''}"
            shutil.copytree(prepared.parent, trial)
            child = context.Process(target=_die_at, args=(step, torn, str(trial / "faces.pkl"), action, small))
            child.start()
            child.join(60)
            assert child.exitcode in (0, _KILLED), child.exitcode
            found = _contents(trial / "faces.pkl")
            assert found in (before, after), f"step {step} ({'torn' if torn else 'before the call'})"
            outcomes["after" if found == after else "before"] += 1
            if found == after:
                files = [entry.read_bytes() for entry in trial.iterdir() if entry.suffix != ".lock"]
                assert not any(encoding in data for encoding in erased for data in files), f"step {step}"
            PickleStore(trial / "faces.pkl", MODEL).add_faces("later", random_encodings(1, 7))
            assert _contents(trial / "faces.pkl") == found + collections.Counter(
                {("default", "later", random_encodings(1, 7)[0].tobytes(), None): 1})
            assert not list(trial.glob(".faces.pkl.*.tmp"))
            shutil.rmtree(trial)
        if child.exitcode == 0:  # the write went through before reaching this step: every step was tried
            break
    else:
        pytest.fail("the write never completed")
    assert outcomes["before"] and outcomes["after"], outcomes


def test_a_torn_journal_tail_is_ignored_then_cut_off(tmp_path: pathlib.Path) -> None:
    """Readers stop before a record a crash left half written; the next writer cuts it off and appends."""
    path = _prepare(tmp_path)
    reader = PickleStore(path, MODEL)
    assert len(reader.gallery()) == 24
    payload = pickle.dumps({"op": "rename", "c": "default", "name": "p0", "to": "torn"})
    with open(tmp_path / "faces.pkl.journal", "ab") as journal:
        journal.write(pickle_journal.FRAME.pack(len(payload), 0) + payload[:5])
    assert [p.name for p in reader.people()] == ["p0", "p1", "p2"]
    PickleStore(path, MODEL).add_faces("p0", random_encodings(1, 60))
    assert [(p.name, p.face_count) for p in reader.people()] == [("p0", 9), ("p1", 8), ("p2", 8)]
    np.testing.assert_array_equal(reader.gallery().encodings[-1], random_encodings(1, 60)[0])
