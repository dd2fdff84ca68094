"""dlib's face network on three runtimes: dlib itself, numpy (faceapi.encoder) and onnxruntime.

Usage: .venv/bin/pip install onnx onnxruntime   # measured candidates only, not dependencies
       .venv/bin/python bench/encoder_runtimes.py [--repeats 20]

All three read the same `dlib_face_recognition_resnet_model_v1.dat`: dlib directly, numpy and
onnxruntime through `faceapi.dlib_model` (onnxruntime gets an ONNX graph built here with the `onnx`
package). One BLAS/intra-op thread each, as in a gunicorn worker thread. Prints, per runtime: the
per-face time at batch 1 and 8 (median), the largest difference from dlib over the faces of
`../shared/faces/examples/knn_examples` (both onnxruntime optimisation levels), and the private
memory a forked worker adds when it encodes 8 faces (weights loaded in the parent, as under preload;
malloc tuned and trimmed as in the service).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


import dlib
import numpy as np
from PIL import Image

from common import FACES
from common import OnnxGraph
from faceapi.dlib_model import FaceNetwork
from faceapi.dlib_model import read_face_network
from faceapi.encoder import FaceEncoder
from faceapi.memory import release_free_memory
from faceapi.memory import tune_malloc
from faceapi.models import ModelPaths


def onnx_model_bytes(network: FaceNetwork) -> bytes:
    """The network as an ONNX graph: input (n, 3, 150, 150) already normalised, output (n, 128)."""
    graph = OnnxGraph()
    const, node = graph.const, graph.node

    def conv_affine(x: str, conv, affine) -> str:
        k = conv.weights.shape[2]
        y = node("Conv", [x, const(conv.weights), const(conv.bias)], kernel_shape=[k, k],
                 strides=[conv.stride] * 2, pads=[conv.padding] * 4)
        channels = conv.weights.shape[0]
        y = node("Mul", [y, const(affine.gamma.reshape(1, channels, 1, 1))])
        return node("Add", [y, const(affine.beta.reshape(1, channels, 1, 1))])

    def pad_end(x: str, extra: tuple[int, int, int]) -> str:
        if not any(extra):
            return x
        return node("Pad", [x, const(np.array([0, 0, 0, 0, 0, *extra]), dtype=np.int64)], mode="constant")

    x = conv_affine("chips", network.stem_conv, network.stem_affine)
    x = node("Relu", [x])
    window, stride = network.stem_pool
    x = node("MaxPool", [x], kernel_shape=[window] * 2, strides=[stride] * 2)
    side, channels = 35, 32
    for block in network.blocks:
        branch = node("Relu", [conv_affine(x, block.conv1, block.affine1)])
        branch = conv_affine(branch, block.conv2, block.affine2)
        filters = block.conv2.weights.shape[0]
        if block.down:
            shortcut = node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            branch_side, pooled_side = (side - 3) // 2 + 1, (side - 2) // 2 + 1
            branch = pad_end(branch, (0, pooled_side - branch_side, pooled_side - branch_side))
            shortcut = pad_end(shortcut, (filters - channels, 0, 0))
            side, channels = max(branch_side, pooled_side), filters
        else:
            shortcut = x
        x = node("Relu", [node("Add", [branch, shortcut])])
    x = node("Flatten", [node("GlobalAveragePool", [x])])
    x = node("MatMul", [x, const(network.projection)])
    return graph.model_bytes("dlib_face_resnet_v1", ("chips", ["n", 3, 150, 150]), ("encodings", ["n", 128]))


class OnnxEncoder:
    def __init__(self, model: bytes, means: np.ndarray, optimise: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.add_session_config_entry("session.disable_prepacking", "1")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.means = means

    def encode(self, chips: np.ndarray) -> np.ndarray:
        x = ((chips.astype(np.float32) - self.means) / np.float32(256)).transpose(0, 3, 1, 2)
        return self.session.run(None, {"chips": np.ascontiguousarray(x)})[0].astype(np.float64)


class DlibEncoder:
    def __init__(self, path: pathlib.Path) -> None:
        self.model = dlib.face_recognition_model_v1(str(path))

    def encode(self, chips: np.ndarray) -> np.ndarray:
        return np.array([np.array(self.model.compute_face_descriptor(chip)) for chip in chips])


def labelled_chips() -> np.ndarray:
    paths = ModelPaths.from_package()
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(paths.shape_predictor))
    chips = []
    for photo in sorted((FACES / "examples/knn_examples").rglob("*.jp*g")):
        image = Image.open(photo).convert("RGB")
        image.thumbnail((1600, 1600))
        pixels = np.asarray(image)
        shapes = dlib.full_object_detections()
        for rect in detector(pixels, 1):
            shapes.append(predictor(pixels, rect))
        chips += dlib.get_face_chips(pixels, shapes, size=150, padding=0.25)
    return np.stack(chips)


def per_face_ms(encoder, chips: np.ndarray, batch: int, repeats: int) -> float:
    batch_chips = chips[:batch]
    encoder.encode(batch_chips)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(batch_chips)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / batch


def private_mb() -> float:
    fields = dict(line.split(":", 1) for line in pathlib.Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty")) / 1024


def rss_peak_mb() -> float:
    """The process's peak resident size so far (VmHWM), shared pages it touched included."""
    line = next(line for line in pathlib.Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def worker_growth_mb(build, chips: np.ndarray) -> str:
    """A forked child builds its runtime (or uses the parent's) and encodes 8 faces: the private memory it
    keeps afterwards, and how far its peak resident size rose above its start."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        before, peak_before = private_mb(), rss_peak_mb()
        encoder = build()
        encoder.encode(chips[:8])
        release_free_memory()  # as the service does after each image
        os.write(write, f"{private_mb() - before:.1f} / {rss_peak_mb() - peak_before:.1f}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    return os.read(read, 64).decode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tune_malloc()  # as gunicorn.conf.py does in the master
    paths = ModelPaths.from_package()
    network = read_face_network(paths.encoder)
    chips = labelled_chips()
    reference = DlibEncoder(paths.encoder)
    expected = reference.encode(chips)
    model = onnx_model_bytes(network)
    numpy_encoder = FaceEncoder(network)
    runtimes = {
        "dlib (dlib-bin, no BLAS)": (lambda: reference, reference),
        "numpy (faceapi.encoder)": (lambda: numpy_encoder, numpy_encoder),
        "onnxruntime, optimised": (lambda: OnnxEncoder(model, network.channel_means, True), None),
        "onnxruntime, no optimisation": (lambda: OnnxEncoder(model, network.channel_means, False), None),
    }
    print(f"{len(chips)} faces; ONNX graph {len(model) / 1e6:.1f} MB; numpy {np.__version__}")
    print("runtime | per face, batch 1 (ms) | per face, batch 8 (ms) | largest difference from dlib | "
          "forked worker: private memory kept / peak RSS rise (MB)")
    for name, (build, shared) in runtimes.items():
        encoder = shared or build()
        difference = float(np.abs(encoder.encode(chips) - expected).max())
        growth = worker_growth_mb((lambda e=encoder: e) if shared is not None else build, chips)
        print(f"{name} | {per_face_ms(encoder, chips, 1, args.repeats):.1f} | "
              f"{per_face_ms(encoder, chips, 8, args.repeats):.1f} | {difference:.1e} | {growth}", flush=True)


if __name__ == "__main__":
    main()
