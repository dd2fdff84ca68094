"""What the benchmarks share: the repository on ``sys.path``, the photos they time, timing and memory.

Every script runs as ``.venv/bin/python bench/NAME.py``, so this directory is first on
``sys.path``; ``import common`` then puts the repository's root and ``backend/`` there
too, for ``tests.*`` (real servers, labelled photos) and ``faceapi``.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import TypeVar

ROOT = pathlib.Path(__file__).resolve().parents[1]
for _path in (str(ROOT / "backend"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(1, _path)

from tests.photos import phone_photo  # noqa: E402,F401 - the benchmarks' 12 MP photo
from tests.servers import FACES  # noqa: E402
from tests.servers import GunicornServer  # noqa: E402

Result = TypeVar("Result")


def median_ms(call: Callable[[], Result], repeats: int) -> tuple[float, Result]:
    """The median time of ``repeats`` calls after one warm-up call, in ms, and the last call's result."""
    result = call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def photo_mix(group: str = "examples/knn_examples/test/obama_and_biden.jpg") -> dict[str, bytes]:
    """The photos every latency benchmark times: 480p, 1080p, a 12 MP phone photo, and a group photo."""
    return {
        "480p": (FACES / "examples/obama-480p.jpg").read_bytes(),
        "1080p": (FACES / "examples/obama-1080p.jpg").read_bytes(),
        "12 MP": phone_photo(),
        f"group ({pathlib.Path(group).name})": (FACES / group).read_bytes(),
    }


def pss_mb(pids: list[int]) -> float:
    """The proportional set size of the processes ``pids``, summed, in MB (from smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            text = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total / 1024


def all_pids(server: GunicornServer) -> list[int]:
    """The gunicorn master and its workers."""
    assert server.process is not None
    return [server.process.pid, *server.worker_pids()]
