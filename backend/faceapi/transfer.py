"""Copy every enrolled face from one store to another: pickle <-> PostgreSQL, or a backup copy.

Usage: faceapi transfer SOURCE DESTINATION   (`faceapi.cli`, from any directory)

Each side is a pickle file path (relative to the current directory) or a
``postgresql://`` URL. The source must exist; the destination is created. Faces keep their ids and the destination skips
ids it already has, so running the same copy twice adds nothing the second time.
An export to a new pickle file is also the backup of a PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import os

from faceapi.config import POSTGRES_URL_SCHEMES
from faceapi.models import ModelPaths
from faceapi.models import model_id
from faceapi.store import StoreError
from faceapi.store import open_store


def transfer(source: str, destination: str) -> tuple[int, int]:
    """Copy all faces from ``source`` to ``destination``; return (faces read, faces added).

    :raises StoreError: a store cannot be read or written, or ``source`` is a file that does not exist
        (opening a missing pickle file would start an empty store, and a typo would copy nothing).
    """
    if not source.startswith(POSTGRES_URL_SCHEMES) and not os.path.isfile(source):
        raise StoreError(f"no store file at {os.path.abspath(source)}")
    models = model_id(ModelPaths.from_package())
    # One store open at a time, each closed whatever happens: the source is released before the destination opens.
    with contextlib.closing(open_store(source, models)) as from_store:
        records = from_store.faces()
    with contextlib.closing(open_store(destination, models)) as to_store:
        return len(records), to_store.import_faces(records)
