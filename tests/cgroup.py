"""A memory cgroup to run the service in, as a 256 MB instance would: for tests and bench/cgroup_fit.py.

Works with the cgroup v2 unified hierarchy (``memory.max``) or the v1 memory controller
(``memory.limit_in_bytes``), whichever this machine mounts with memory control; needs root.
Swap is disabled inside, so going over the limit means reclaim, then the OOM killer.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from collections.abc import Iterator


class MemoryCgroup:
    """A fresh cgroup with a memory limit; `launcher` runs a command inside it."""

    def __init__(self, path: pathlib.Path, version: int) -> None:
        self.path, self.version = path, version

    @property
    def launcher(self) -> list[str]:
        """Prefix for a command line: the shell moves itself into the cgroup, then execs the command."""
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh"]

    def peak_mb(self) -> float:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return int((self.path / name).read_text()) / 2**20

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def _pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]


def _memory_root() -> tuple[pathlib.Path, int]:
    unified = pathlib.Path("/sys/fs/cgroup")
    controllers = unified / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return unified, 2
    v1 = pathlib.Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, 1
    raise RuntimeError("no writable memory cgroup controller (cgroup v2 memory.max or v1 memory) on this machine")


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[MemoryCgroup]:
    """A new cgroup limited to ``limit_bytes`` of memory and no swap, removed afterwards.

    :raises RuntimeError: not root, or no memory controller to write to.
    """
    if os.geteuid() != 0:
        raise RuntimeError("a memory cgroup needs root")
    root, version = _memory_root()
    path = root / f"faceapi-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    try:
        if version == 2:
            (path / "memory.max").write_text(str(limit_bytes))
            (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # absent when the kernel does not account swap
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        yield MemoryCgroup(path, version)
    finally:
        group = MemoryCgroup(path, version)
        deadline = time.monotonic() + 10
        while group._pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            path.rmdir()
