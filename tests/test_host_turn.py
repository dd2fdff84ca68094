"""The host-wide turn is a service's own: services of one user on one host, each with its own store, never
wait for each other's large analyses; the processes of one service share one turn."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from faceapi.config import Settings
from faceapi.memory import host_wide_turn
from faceapi.memory import turn_lock_paths
from faceapi.pipeline import Pipeline


def _waits_for(held_by: str, asker: str) -> bool:
    """Whether a large turn asked for by ``asker`` waits while ``held_by`` holds a large one."""
    entered = threading.Event()
    with host_wide_turn(large=True, service=held_by):
        def ask() -> None:
            with host_wide_turn(large=True, service=asker):
                entered.set()

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        entered.wait(10)  # a generous bound: entering an idle turn takes microseconds
        waited = not entered.is_set()
    asking.join(10)
    assert entered.is_set()  # and once released, it gets its turn
    return waited


def test_two_services_have_their_own_turn_and_one_service_shares_it() -> None:
    assert not _waits_for("/srv/school-a/faces.pkl", "/srv/school-b/faces.pkl")
    assert _waits_for("/srv/school-a/faces.pkl", "/srv/school-a/faces.pkl")


@pytest.mark.parametrize("settings", [Settings(store_path="data/faces.pkl"),
                                      Settings(database_url="postgresql://u:pw@db:5432/faces")],
                         ids=["pickle", "postgres"])
def test_a_pipeline_takes_the_turn_named_by_its_store(engine, settings: Settings) -> None:
    """The lock files an operator finds in /dev/shm are named by the store's location (README)."""
    pipeline = Pipeline(engine, settings)
    _gate, turn = turn_lock_paths(pipeline.service)
    with host_wide_turn(large=True, service=pipeline.service), open(turn, "a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    assert pipeline.service == (settings.database_url or os.path.abspath(settings.store_path))
