"""dlib's CNN face detector's network on two runtimes: numpy (faceapi.cnn) and onnxruntime, on the same tensor.

Usage: .venv/bin/pip install onnx onnxruntime   # measured candidates only, not dependencies
       .venv/bin/python bench/cnn_runtimes.py [--repeats 5]

Both read `mmod_human_face_detector.dat` through `faceapi.mmod_model`; onnxruntime gets an ONNX graph
built here with the `onnx` package (convolutions, the folded batch norm as Mul and Add, Relu, the 9x9
head). The input is the tiled pyramid tensor `faceapi.cnn` builds for each photo. Prints the median
time of the network alone (no pyramid, no NMS) on 1 and 2 threads, numpy's with its bands, and the
largest score difference between the two.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from common import FACES
from common import OnnxGraph
from common import median_ms
from faceapi.cnn import CnnFaceDetector
from faceapi.mmod_model import MmodNetwork
from faceapi.mmod_model import read_mmod_detector
from faceapi.models import ModelPaths

PHOTOS = {"two_people.jpg / 2 (331x563)": ("examples/two_people.jpg", 2),
          "two_people.jpg (661x1126)": ("examples/two_people.jpg", 1)}


def onnx_model_bytes(network: MmodNetwork) -> bytes:
    """The network as an ONNX graph: input (1, 3, rows, cols), the tensor; output (1, 1, rows/8, cols/8)."""
    graph = OnnxGraph()
    x = "tensor"
    for conv, affine in network.layers:
        k = conv.weights.shape[2]
        x = graph.node("Conv", [x, graph.const(conv.weights), graph.const(conv.bias)], kernel_shape=[k, k],
                       strides=[conv.stride] * 2, pads=[conv.padding] * 4)
        if affine is not None:
            channels = conv.weights.shape[0]
            x = graph.node("Mul", [x, graph.const(affine.gamma.reshape(1, channels, 1, 1))])
            x = graph.node("Relu", [graph.node("Add", [x, graph.const(affine.beta.reshape(1, channels, 1, 1))])])
    return graph.model_bytes("dlib_mmod_face_detector", ("tensor", [1, 3, "rows", "cols"]),
                             ("scores", [1, 1, "r", "c"]))


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = ModelPaths.from_package().cnn_detector
    network = read_mmod_detector(path)
    ours = CnnFaceDetector(network)
    model = onnx_model_bytes(network)
    sessions = {}
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sessions[threads] = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    print("photo | tensor | numpy 1 thread ms | numpy 2 threads ms | onnxruntime 1 thread ms | "
          "onnxruntime 2 threads ms | largest difference")
    for label, (relative, step) in PHOTOS.items():
        image = np.ascontiguousarray(np.asarray(Image.open(FACES / relative).convert("RGB"))[::step, ::step])
        pyramid = ours.pyramid(image)
        tensor = pyramid.band(0, pyramid.rows)
        planar = np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])
        cells = []
        for threads in (1, 2):
            ms, scores = median_ms(lambda: ours._scores(ours.pyramid(image), threads=threads),  # noqa: B023
                                   args.repeats)
            cells.append(f"{ms:.0f}")
        for threads in (1, 2):
            ms, (onnx_scores,) = median_ms(lambda: sessions[threads].run(None, {"tensor": planar}),  # noqa: B023
                                           args.repeats)
            cells.append(f"{ms:.0f}")
        difference = float(np.abs(onnx_scores[0, 0] - scores).max())
        print(f"{label} | {tensor.shape[0]}x{tensor.shape[1]} | " + " | ".join(cells) + f" | {difference:.1e}",
              flush=True)


if __name__ == "__main__":
    main()
