"""The embedded store: a snapshot, an append-only journal and one matrix file per collection.

Files beside ``<path>`` (all in one directory):

- ``<path>``: the snapshot, a pickle of plain data (format 4): each collection's people, and per face
  its row in the matrix file, id, creation time and external id, in compact arrays.
- ``<path>.journal``: what changed since the snapshot, as framed records (length, CRC-32, pickle).
  Its header names the snapshot's generation, so a journal left by a crash is never applied twice.
- ``<path>.<token>.f32``: a collection's encodings, 128 little-endian float32 a row, rows appended.
  Every process of the host maps it read-only, so the workers share one copy of the gallery.
- ``<path>.lock``: the cross-process write lock (``flock``).

Why it holds up:

- A write holds the lock, brings its view up to date, writes new rows into the matrix file past the
  last committed row and fsyncs them, then appends one journal record and fsyncs it: that append is
  the commit. A crash before it leaves rows no record names (overwritten by the next write) or a torn
  record (readers stop before it; the next writer cuts it off). Nothing grows with the gallery.
- Readers need no lock: each request stats the snapshot and the journal, and applies only the records
  appended since its last look; the gallery is rebuilt from the shared map in time proportional to
  the change.
- A removal is erasure: it writes a new snapshot without the removed faces (tmp file, fsync, rename,
  directory fsync), starts a new journal, then overwrites the removed rows with zeros (redone by the
  next process that opens the store, should a crash come first). The journal is also folded into a
  new snapshot when it outgrows it, and a matrix file is rewritten without its removed rows once they
  are a quarter of it.
- Everything is unpickled by an unpickler that resolves no global at all: a file carrying code is
  refused, not run. Formats 1 to 3 (one pickle holding everything) are upgraded in place when the
  store opens, under the lock; the old file stays as ``<path>.bak`` until the first removal.

Modules: `store` (the `PickleStore`: reading, writing, recovery), `collection` (one collection as a process
holds it), `journal` (framed records), `formats` (the snapshot's plain-data format, the unpickler, formats 1-3)
and `files` (durable writes and the write lock, with the rules for holding it).
"""

from faceapi.store.pickle_file.store import PickleStore

__all__ = ["PickleStore"]
