"""Durable file operations of the pickle store, and its write lock with the rules for holding it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
from collections.abc import Iterator

from faceapi.store import StoreError
from faceapi.store import StoreFull

Signature = tuple[int, int, int, int]  # (device, inode, mtime in ns, size): one version of a file


class WriteLock:
    """The store's cross-process write lock: an exclusive ``flock`` on ``<path>.lock``.

    The rules, all here:

    - Whoever changes a file of the store (the snapshot, the journal, a matrix file, the backup) or
      deletes one holds this lock; readers never take it.
    - In a process, the caller also holds the store's thread lock (`PickleStore` takes it first), so
      one thread at a time holds or asks for this lock, and ``held`` needs no guard of its own.
    - It is re-entrant: code that needs it calls `hold` whether or not its caller already holds it
      (a recovery during a write). A second ``flock`` on another descriptor of the same file would
      wait for ever on the first, so the process that holds the lock knows it, and does not ask again.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._depth = 0

    @property
    def held(self) -> bool:
        """This process holds the lock."""
        return self._depth > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the ``with`` block: taken (waiting for other processes) unless already held."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth = 1
            yield
        finally:
            self._depth = 0
            os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def writing(target: pathlib.Path) -> Iterator[None]:
    """Turn an OS error into the store's errors: a full disk into `StoreFull`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"no space left to write the store {target}; it is unchanged") from exc
        raise StoreError(f"cannot write the store {target}: {exc.strerror}") from exc


def write_at(path: pathlib.Path, chunks: Iterator[tuple[int, bytes]], *, create: bool = False,
             truncate: bool = False) -> None:
    """Write each ``(offset, bytes)`` of ``chunks`` into ``path``, then fsync it."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0) | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, 0o600)
    try:
        for offset, payload in chunks:
            write_all(fd, payload, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, payload: bytes, offset: int) -> None:
    view = memoryview(payload)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def signature(path: pathlib.Path) -> Signature | None:
    """Identity of a file's current version; ``os.replace`` always makes a new inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from exc
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename or a new file durable: a directory entry lives in the directory's own blocks."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
