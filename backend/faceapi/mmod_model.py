"""Read dlib's CNN face detector (``mmod_human_face_detector.dat``) without dlib.

The file is dlib's serialisation of the network of ``examples/dnn_mmod_face_detection_ex.cpp``:
``loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>``,
three 5x5 stride-2 convolutions (the downsampler), three 5x5 stride-1 ones, each with batch
norm and relu, and a 9x9 head that gives one score per cell. As `faceapi.dlib_model` does for
the face encoder, the reader holds the architecture and checks the file against it record by
record, to its last byte; any other file is refused with `ModelFormatError`.

Batch norm is stored with its running statistics; dlib folds it into a per-channel affine when
it loads the net (``affine_(const bn_&)``), in float32 and with the stored epsilon, and so does
`read_mmod_detector`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from faceapi.dlib_model import Affine
from faceapi.dlib_model import Conv
from faceapi.dlib_model import ModelFormatError
from faceapi.dlib_model import _read_conv
from faceapi.dlib_model import _Reader
from faceapi.dlib_model import _skip_training_state
from faceapi.dlib_model import read_dlib_file

# (filters, kernel, stride, padding) of each convolution, from the input; each but the last is
# followed by batch norm and relu.
CONVOLUTIONS = ((16, 5, 2, 0), (32, 5, 2, 0), (32, 5, 2, 0), (45, 5, 1, 2), (45, 5, 1, 2), (45, 5, 1, 2),
                (1, 9, 1, 4))


@dataclasses.dataclass(frozen=True)
class MmodNetwork:
    """dlib's CNN face detector, as read from its file.

    :param channel_means: subtracted from R, G, B before dividing by 256.
    :param layers: each convolution with its folded batch norm (None for the head).
    :param window: the detection window (rows, cols) in pixels of a pyramid level.
    :param nms_iou: two detections overlap (and the weaker goes) above this ratio of their
        intersection to their bounding box.
    """

    channel_means: np.ndarray
    layers: tuple[tuple[Conv, Affine | None], ...]
    window: tuple[int, int]
    nms_iou: float


def read_mmod_detector(path: str | os.PathLike[str]) -> MmodNetwork:
    """Read and check the detector at ``path``.

    :raises ModelFormatError: the file is not dlib's MMOD face detector, or is damaged.
    :raises OSError: the file cannot be read.
    """
    return read_dlib_file(path, _read_network, "a dlib MMOD face detector")


def _read_network(reader: _Reader) -> MmodNetwork:
    reader.expect(reader.integer(), 1, "loss layer version")
    reader.expect(reader.string(), "loss_mmod_", "loss layer")
    reader.expect(reader.integer(), 1, "mmod options version")
    window = (reader.integer(), reader.integer())
    reader.expect(window, (80, 80), "detector window")
    options = [reader.real() for _ in range(7)]
    # loss per false alarm and per missed target, truth match IoU, NMS (IoU, covered), ignore (IoU, covered).
    nms_iou, nms_covered = options[3], options[4]
    reader.expect(nms_covered, 1.0, "NMS percent covered")
    if not 0 < nms_iou < 1:
        raise ModelFormatError(f"NMS IoU {nms_iou} out of range")
    kinds = [kind for index in range(len(CONVOLUTIONS))
             for kind in (("con", "bn", "relu") if index < len(CONVOLUTIONS) - 1 else ("con",))]
    versions = [reader.integer() for _ in kinds][::-1]  # outermost first in the file
    reader.expect(versions, [3] + [2] * (len(kinds) - 1), "layer wrapper versions")
    reader.expect(reader.string(), "input_rgb_image_pyramid", "input layer")
    means = np.array([reader.real() for _ in range(3)], dtype=np.float32)

    layers: list[tuple[Conv, Affine | None]] = []
    channels = 3
    conv: Conv | None = None
    for index, (kind, version) in enumerate(zip(kinds, versions, strict=True)):
        name = reader.string()
        if kind == "con":
            reader.expect(name, "con_4", f"layer {index}")
            filters, size, stride, padding = CONVOLUTIONS[len(layers)]
            conv = _read_conv(reader, name, channels, filters, size, stride, padding)
            channels = filters
            if len(layers) == len(CONVOLUTIONS) - 1:
                layers.append((conv, None))
        elif kind == "bn":
            reader.expect(name, "bn_con2", f"layer {index}")
            assert conv is not None
            layers.append((conv, _read_batch_norm(reader, channels)))
        else:
            reader.expect(name, "relu_", f"layer {index}")
        _skip_training_state(reader, version, innermost=index == 0)
    if reader.pos != len(reader.data):
        raise ModelFormatError(f"{len(reader.data) - reader.pos} unexpected bytes after the last layer")
    return MmodNetwork(means, tuple(layers), window, nms_iou)


def _read_batch_norm(reader: _Reader, channels: int) -> Affine:
    """A ``bn_con2`` record, folded as dlib folds it at load: ``g = gamma / sqrt(var + eps)``, ``b = beta - g*mean``."""
    params = reader.tensor().reshape(-1)
    reader.expect(params.size, 2 * channels, "batch norm parameter count")
    reader.expect(reader.alias(), (1, channels, 1, 1), "batch norm gamma shape")
    reader.expect(reader.alias(), (1, channels, 1, 1), "batch norm beta shape")
    reader.tensor(), reader.tensor()  # this batch's means and inverse deviations: training only
    running_means = reader.tensor().reshape(-1)
    running_variances = reader.tensor().reshape(-1)
    reader.expect((running_means.size, running_variances.size), (channels, channels), "running statistics")
    reader.integer(), reader.integer()  # updates seen and the running window: training only
    for _ in range(4):
        reader.real()  # learning-rate and weight-decay multipliers: training only
    eps = np.float32(reader.real())
    if not 0 < eps < 1:
        raise ModelFormatError(f"batch norm epsilon {eps} out of range")
    gamma, beta = params[:channels].astype(np.float32), params[channels:].astype(np.float32)
    scale = gamma / np.sqrt(running_variances.astype(np.float32) + eps)
    return Affine(scale.astype(np.float32), (beta - scale * running_means).astype(np.float32))
