"""What the benchmarks share: the repository on ``sys.path``, the photos they time, timing and memory.

Every script runs as ``.venv/bin/python bench/NAME.py``, so this directory is first on
``sys.path``; ``import common`` then puts the repository's root and ``backend/`` there
too, for ``tests.*`` (real servers, labelled photos) and ``faceapi``.
"""

from __future__ import annotations

import contextlib
import itertools
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import TypeVar

import numpy as np

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


class OnnxGraph:
    """An ONNX graph built node by node, for the runtime benchmarks (``pip install onnx`` first)."""

    def __init__(self) -> None:
        from onnx import helper
        from onnx import numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.weights: list = []
        self._counter = itertools.count()

    def const(self, array: np.ndarray, dtype: type = np.float32) -> str:
        """A weight of the graph; its name."""
        name = f"w{next(self._counter)}"
        self.weights.append(self._numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        """An operator over ``inputs``; the name of its output."""
        out = f"t{next(self._counter)}"
        self.nodes.append(self._helper.make_node(op, inputs, [out], **attrs))
        return out

    def model_bytes(self, name: str, source: tuple[str, list], result: tuple[str, list]) -> bytes:
        """The checked, serialised model: input ``source`` (name, shape), the last node's output named as ``result``."""
        import onnx
        from onnx import TensorProto

        helper = self._helper
        self.nodes[-1].output[0] = result[0]
        graph = helper.make_graph(self.nodes, name,
                                  [helper.make_tensor_value_info(source[0], TensorProto.FLOAT, source[1])],
                                  [helper.make_tensor_value_info(result[0], TensorProto.FLOAT, result[1])],
                                  self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        return model.SerializeToString()


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


@contextlib.contextmanager
def throwaway_store(server: str | None) -> Iterator[str]:
    """A store location for one measurement: a pickle file in a temporary directory (``server`` None), or a
    URL of ``server`` whose connections see a fresh schema (and ``public``, where pgvector lives), dropped
    at the end."""
    if server is None:
        with tempfile.TemporaryDirectory() as directory:
            yield f"{directory}/faces.pkl"
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        separator = "&" if "?" in server else "?"
        yield f"{server}{separator}options=-csearch_path%3D{schema}%2Cpublic"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
