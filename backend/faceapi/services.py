"""The long-lived objects one app uses, built once per process before fork."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.scanning import DetectOptions
from faceapi.store import Store
from faceapi.store import open_store


@dataclasses.dataclass(frozen=True)
class Services:
    """Settings, the face engine and the store, as kept in ``app.extensions["faceapi"]``."""

    settings: Settings
    engine: FaceEngine
    store: Store
    # Held while an image is decoded and analysed: caps the transient memory of a worker.
    image_slots: threading.BoundedSemaphore

    @classmethod
    def build(cls, settings: Settings, engine: FaceEngine | None = None,
              on_store_reload: Callable[[], None] | None = None) -> Services:
        """Load the models (unless an engine is given) and open the store that ``settings`` name.

        :param on_store_reload: see `faceapi.store.open_store`'s ``on_reload``.
        """
        if engine is None:
            # One detector per image slot: detection only runs while a slot is held.
            engine = FaceEngine.load(detect_options(settings), detectors=settings.max_concurrent_images)
        store = open_store(settings.store_location, engine.model_id, pool_size=settings.threads,
                           on_reload=on_store_reload)
        return cls(settings, engine, store, threading.BoundedSemaphore(settings.max_concurrent_images))

    @property
    def detect(self) -> DetectOptions:
        """How hard detection looks by default and at most: from the settings, whatever engine was given."""
        return detect_options(self.settings)


def detect_options(settings: Settings) -> DetectOptions:
    """The detection settings, as the engine takes them."""
    return DetectOptions(settings.min_face_px, settings.detect_side_px or None, settings.max_scan_pixels)
