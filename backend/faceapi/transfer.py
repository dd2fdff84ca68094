"""Copy enrolled faces from one store to another: pickle <-> PostgreSQL, or a backup copy.

Usage: faceapi transfer SOURCE DESTINATION [--collection NAME]   (`faceapi.cli`, from any directory)

Each side is a pickle file path (relative to the current directory) or a
``postgresql://`` URL. The source must exist; the destination is created. Every
collection is copied into the collection of the same name, or only the one named.
Faces keep their ids and the destination skips ids it already has, so running the
same copy twice adds nothing the second time. An export to a new pickle file is
also the backup of a PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from faceapi.config import POSTGRES_URL_SCHEMES
from faceapi.models import ModelPaths
from faceapi.models import model_id
from faceapi.store import FaceRecord
from faceapi.store import StoreError
from faceapi.store import open_store
from faceapi.store.pickle_file.formats import FORMAT_VERSION
from faceapi.store.pickle_file.formats import stored_format


def transfer(source: str, destination: str, collection: str | None = None) -> tuple[int, int]:
    """Copy the faces of every collection (or of ``collection``) from ``source`` to ``destination``;
    return (faces read, faces added).

    :raises StoreError: a store cannot be read or written, or ``source`` is a file that does not exist
        (opening a missing pickle file would start an empty store, and a typo would copy nothing).
    """
    if not source.startswith(POSTGRES_URL_SCHEMES) and not os.path.isfile(source):
        raise StoreError(f"no store file at {os.path.abspath(source)}")
    models = model_id(ModelPaths.from_package())
    # One store open at a time, each closed whatever happens: the source is released before the destination opens.
    with _as_it_is(source) as readable, contextlib.closing(open_store(readable, models)) as from_store:
        names = [collection] if collection else [summary.name for summary in from_store.collections()]
        copied: dict[str, list[FaceRecord]] = {name: from_store.faces(collection=name) for name in names}
    with contextlib.closing(open_store(destination, models)) as to_store:
        added = sum(to_store.import_faces(records, collection=name) for name, records in copied.items() if records)
    return sum(len(records) for records in copied.values()), added


@contextlib.contextmanager
def _as_it_is(source: str) -> Iterator[str]:
    """``source``, or, for a pickle file of an older format, a copy of it: opening a store upgrades such a
    file in place, and a copy's source stays as it was (a service of the older version may still use it)."""
    if source.startswith(POSTGRES_URL_SCHEMES) or stored_format(pathlib.Path(source)) in (None, FORMAT_VERSION):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="faceapi-transfer-") as scratch:
        copy = os.path.join(scratch, os.path.basename(source))
        shutil.copyfile(source, copy)
        yield copy
