"""Copy every enrolled face from one store to another: pickle <-> PostgreSQL, or a backup copy.

Usage: faceapi-transfer SOURCE DESTINATION   (or python -m faceapi.transfer, from any directory)

Each side is a pickle file path (relative to the current directory) or a
``postgresql://`` URL. The source must exist; the destination is created. Faces keep their ids and the destination skips
ids it already has, so running the same copy twice adds nothing the second time.
An export to a new pickle file is also the backup of a PostgreSQL store.
"""

from __future__ import annotations

import argparse
import os
import sys

from faceapi.config import POSTGRES_URL_SCHEMES
from faceapi.engine import ModelPaths
from faceapi.engine import model_id
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
    from_store = open_store(source, models)
    to_store = open_store(destination, models)
    try:
        records = from_store.faces()
        return len(records), to_store.import_faces(records)
    finally:
        from_store.close()
        to_store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faceapi-transfer", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="pickle file path or postgresql:// URL to read")
    parser.add_argument("destination", help="pickle file path or postgresql:// URL to add to")
    args = parser.parse_args(argv)
    try:
        read, added = transfer(args.source, args.destination)
    except StoreError as exc:
        print(f"transfer failed: {exc}", file=sys.stderr)
        return 1
    print(f"read {read} faces, added {added} new ({read - added} already present)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
