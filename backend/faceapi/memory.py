"""glibc malloc tuning for a threaded image service, applied in the gunicorn master before fork.

Two glibc defaults make a threaded worker's memory grow and stay grown:
- each thread that contends for malloc gets its own arena (up to 8 per core), and
  freed memory stays cached in every arena;
- the mmap threshold adapts upwards (to 32 MiB) after a large block is freed, so
  later image-sized buffers come from the heap, where they fragment and are kept.
Capping arenas and fixing the threshold returns image buffers to the system
when a request ends. Both are process-wide and inherited by forked workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``); a no-op elsewhere."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim():
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


_malloc_trim = _load_malloc_trim()


# The service's fixed mmap threshold (`FACEAPI_MALLOC_MMAP_THRESHOLD`'s default): docs/BENCHMARKS.md, malloc.
MMAP_THRESHOLD_BYTES = 1 << 20


def tune_malloc(arena_max: int = 2, mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Cap malloc arenas and fix the mmap threshold (0: leave glibc's adaptive one); False where the C library
    is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("not glibc: malloc tuning skipped")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    fixed = mmap_threshold_bytes == 0 or bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes))
    if fixed and mmap_threshold_bytes:
        _fixed_threshold.update(mallopt=mallopt, bytes=mmap_threshold_bytes)
    return bool(mallopt(_M_ARENA_MAX, arena_max)) and fixed


# The threshold `tune_malloc` fixed, and glibc's mallopt: empty when the threshold is glibc's own.
_fixed_threshold: dict = {}
# What `scratch_from_the_heap` raises the threshold to: above any block a detection asks for.
_SCRATCH_THRESHOLD_BYTES = 64 << 20


@contextlib.contextmanager
def scratch_from_the_heap() -> Iterator[None]:
    """Large blocks come from the heap while this runs, not from fresh mappings.

    For code that allocates and frees large blocks many times over, as YuNet does its layers' outputs
    (about 60 MB a megapixel each call): with the fixed threshold every one is mapped afresh and faulted in
    page by page, 35 ms of a 0.8 MP detection's 121 (docs/DETECTORS.md). Freed, the blocks stay in the
    heap until the request's `release_free_memory`. A no-op unless `tune_malloc` fixed the threshold.
    """
    if not _fixed_threshold:
        yield
        return
    _fixed_threshold["mallopt"](_M_MMAP_THRESHOLD, _SCRATCH_THRESHOLD_BYTES)
    try:
        yield
    finally:
        _fixed_threshold["mallopt"](_M_MMAP_THRESHOLD, _fixed_threshold["bytes"])


@contextlib.contextmanager
def host_wide_turn(large: bool, service: str) -> Iterator[None]:
    """An analysis's turn on this host, across every process of the service: a large one runs alone.

    A large analysis (a CNN detection, or a photo decoded at more than a few million pixels for a
    fine scan) holds about 60-120 MB while it runs; beside two others it would not fit a 256 MB
    instance (tests/test_memory_fit.py). So the small ones share the turn (``flock`` shared) and a
    large one takes it alone (exclusive). A gate taken first, and held while a large one waits,
    keeps a stream of small ones from starving it. Each call opens the lock files itself, so that
    ``flock`` excludes between processes and between threads alike.

    :param service: what names the service on the host: its processes share one turn, another
        service's have their own (`turn_lock_paths`).
    """
    gate_path, turn_path = turn_lock_paths(service)
    with open(gate_path, "a") as gate, open(turn_path, "a") as turn:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX if large else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)


def turn_lock_paths(service: str) -> tuple[str, str]:
    """The gate and turn lock files of ``service`` (the store's location, as `Settings.store_location` gives
    it): ``<shm>/faceapi-<uid>-<16 hex digits of its SHA-256>-{gate,turn}.lock``. README says how to find them."""
    key = f"{os.getuid()}-{hashlib.sha256(service.encode()).hexdigest()[:16]}"
    return (os.path.join(_LOCK_DIR, f"faceapi-{key}-gate.lock"), os.path.join(_LOCK_DIR, f"faceapi-{key}-turn.lock"))


_LOCK_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
