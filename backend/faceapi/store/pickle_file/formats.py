"""The store's on-disk data: the snapshot's plain-data format, the unpickler that reads it, and formats 1-3.

Snapshot (format 4): {"format": 4, "model": str, "generation": str, "collections": {name: entry}}.
An entry: {"matrix": token, "rows": int, "people": [name], "labels": <i4 bytes (-1: removed), "ids": 16 bytes
a row (an id of 32 hex digits, as the service makes them), "other_ids": {row: str} (ids of another form,
from imports), "created": <i8 bytes (microseconds since the epoch, UTC), "external": {row: str},
"erased": [row]: rows the write of this snapshot removed, zeroed after it}.
Format 3 (read for upgrades): {"collections": {name: {"people": n, "faces": n, "data": pickle of
{name: {"ids", "encodings", "created", "external_ids"}}}}}; formats 1 and 2 had one such "people".
"""

from __future__ import annotations

import datetime
import io
import pathlib
import pickle
from typing import Any

from faceapi.matching import ENCODING_WIDTH
from faceapi.matching import STORED_DTYPE
from faceapi.matching import stored_matrix
from faceapi.scopes import DEFAULT_COLLECTION
from faceapi.store import FaceRecord
from faceapi.store import StoreError

FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, FORMAT_VERSION)
ROW_BYTES = ENCODING_WIDTH * STORED_DTYPE.itemsize
Data = dict[str, Any]


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: our format needs none, and a global is how a pickle runs code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the store file refers to {module}.{name}; only plain data is allowed")


def unpickled(raw: bytes, where: pathlib.Path) -> Any:
    """Plain data from ``raw`` (a file or a record of ``where``). :raises StoreError: malformed, or carrying code."""
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # any malformed pickle: the message says which file
        backup = where.with_name(where.name + ".bak")
        hint = f"; the previous version is in {backup}" if backup.is_file() and backup != where else ""
        raise StoreError(f"the store {where} is not a valid store file ({exc}){hint}") from exc


def parsed(raw: bytes, where: pathlib.Path, model_id: str) -> Data:
    """A snapshot file's data, of any readable format, checked to hold encodings of ``model_id``."""
    data = unpickled(raw, where)
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise StoreError(f"the store {where} is not in a store format this version reads "
                         f"({', '.join(map(str, READABLE_FORMATS))})")
    if data.get("model") != model_id:
        raise StoreError(f"the store {where} holds encodings made by models {data.get('model')!r}, "
                         f"not by this service's {model_id!r}; they cannot be mixed")
    if not isinstance(data.get("collections", {}), dict):
        raise StoreError(f"the store {where} has a malformed collection record")
    return data


def stored_format(path: pathlib.Path) -> int | None:
    """The format number of the snapshot file at ``path``; None if it is not a store file."""
    try:
        data = unpickled(path.read_bytes(), path)
    except (OSError, StoreError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def old_format_records(data: Data, where: pathlib.Path) -> dict[str, list[FaceRecord]]:
    """Every face of a format 1-3 file, by collection."""
    if data["format"] < 3:
        _upgrade_to_format_3(data, where)
    collections = data.get("collections")
    if not isinstance(collections, dict) or not all(
            isinstance(name, str) and _valid_entry(entry) for name, entry in collections.items()):
        raise StoreError(f"the store {where} has a malformed collection record")
    return {name: [record for person, faces in _parse_people(entry["data"], where).items()
                   for record in _format_3_records(person, faces)]
            for name, entry in collections.items()}


def _valid_person(name: Any, person: Any) -> bool:
    if not (isinstance(name, str) and isinstance(person, dict) and isinstance(person.get("ids"), list)):
        return False
    count = len(person["ids"])
    return (
        isinstance(person.get("encodings"), bytes)
        and len(person["encodings"]) == count * ROW_BYTES
        and all(isinstance(value, str) for value in person["ids"])
        and isinstance(person.get("created"), list) and len(person["created"]) == count
        and all(value is None or isinstance(value, int) for value in person["created"])
        and isinstance(person.get("external_ids"), list) and len(person["external_ids"]) == count
        and all(value is None or isinstance(value, str) for value in person["external_ids"])
    )


def _upgrade_to_format_3(data: Data, where: pathlib.Path) -> None:
    """Format 3 holds collections, and formats 1 and 2 one: theirs becomes the default collection.
    Format 2 added creation times (unknown for older faces) and external ids (none) to each person."""
    people = data.pop("people", None)
    if not isinstance(people, dict):
        return  # and no "collections" either: refused as malformed
    if data["format"] == 1:
        for person in people.values():
            if isinstance(person, dict) and isinstance(person.get("ids"), list):
                person.setdefault("created", [None] * len(person["ids"]))
                person.setdefault("external_ids", [None] * len(person["ids"]))
    _check_people(people, where)
    data["collections"] = {DEFAULT_COLLECTION: {"people": len(people), "faces": 0,
                                                "data": pickle.dumps(people, protocol=pickle.HIGHEST_PROTOCOL)}}


def _format_3_records(name: str, person: dict[str, Any]) -> list[FaceRecord]:
    return [FaceRecord(face_id, name, encoding, None if created is None else datetime_of(created), external_id)
            for face_id, encoding, created, external_id in zip(
                person["ids"], stored_matrix(person["encodings"]), person["created"], person["external_ids"],
                strict=True)]


def _parse_people(blob: bytes, where: pathlib.Path) -> dict[str, Any]:
    return _check_people(unpickled(blob, where), where)


def _check_people(people: Any, where: pathlib.Path) -> dict[str, Any]:
    if not isinstance(people, dict) or not all(_valid_person(name, person) for name, person in people.items()):
        raise StoreError(f"the store {where} has a malformed person record")
    return people


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("people"), int) and isinstance(entry.get("faces"), int)
            and isinstance(entry.get("data"), bytes))


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def microseconds(moment: datetime.datetime) -> int:
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


def datetime_of(microseconds: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=microseconds)

