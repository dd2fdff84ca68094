"""The journal: what changed since the snapshot, as framed records (length, CRC-32, pickle).

Its first record, the header, names the snapshot's generation, so a journal left by a crash is never
applied to another snapshot. A torn record at the end (a writer died while appending it) is where
readers stop; the next writer cuts it off.
"""

from __future__ import annotations

import pathlib
import pickle
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from faceapi.store.pickle_file.formats import unpickled

FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload


def framed(record: Any) -> bytes:
    """``record`` as the journal holds it."""
    payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def frames(raw: bytes, offset: int, where: pathlib.Path) -> Iterator[tuple[Any, int]]:
    """The whole records in ``raw`` (journal bytes from ``offset``) with the offset past each; stops at a
    torn or incomplete one."""
    position = 0
    while position + FRAME.size <= len(raw):
        length, checksum = FRAME.unpack_from(raw, position)
        payload = raw[position + FRAME.size:position + FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != checksum:
            return
        position += FRAME.size + length
        yield unpickled(payload, where), offset + position
