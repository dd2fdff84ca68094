"""The long-lived objects one app uses, built once per process before fork."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline
from faceapi.store import Store
from faceapi.store import open_store


@dataclasses.dataclass(frozen=True)
class Services:
    """Settings, the face engine, the pipeline on it and the store, as kept in ``app.extensions["faceapi"]``."""

    settings: Settings
    engine: FaceEngine
    pipeline: Pipeline
    store: Store

    @classmethod
    def build(cls, settings: Settings, engine: FaceEngine | None = None,
              on_store_reload: Callable[[], None] | None = None) -> Services:
        """Load the models (unless an engine is given) and open the store that ``settings`` name.

        :param on_store_reload: see `faceapi.store.open_store`'s ``on_reload``.
        """
        if engine is None:
            # One detector per image slot: detection only runs while a slot is held.
            engine = FaceEngine.load(detectors=settings.max_concurrent_images)
        store = open_store(settings.store_location, engine.model_id, pool_size=settings.threads,
                           on_reload=on_store_reload, pgvector=settings.pgvector)
        return cls(settings, engine, Pipeline(engine, settings), store)
