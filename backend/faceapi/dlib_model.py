"""Read dlib's face-recognition network (``dlib_face_recognition_resnet_model_v1.dat``) without dlib.

The file is dlib's serialisation of one network type, ``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp``: a ResNet-29 over a 150x150 RGB chip.
Nothing in the file describes the wiring (dlib's types do), so the reader holds
the architecture (`_forward_layers`) and checks the file against it record by
record: every record name, shape, stride and padding must be what that
architecture has, and the file must end where it does. Any other file is refused
with `ModelFormatError`, never guessed at.

Encoding of the file (dlib's ``serialize.h``, ``cuda/tensor.h``, ``dnn/core.h``):
- integer: a control byte (low 4 bits: byte count; bit 0x80: negative), then the
  magnitude in little-endian; float and double: an integer mantissa, then an
  integer exponent (``ldexp``); bool: ``'0'`` or ``'1'``; string: length, bytes.
- tensor: version 2, four int64 dims (n, k, rows, cols), raw little-endian float32.
- the network: the loss layer's version and record; then one version integer per
  layer wrapper, outermost first (tags and skips included); then the input
  layer's record; then each layer's record, innermost first, each followed by
  its wrapper's (empty) training state.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from collections.abc import Iterator
from typing import TypeVar

import numpy as np

Network = TypeVar("Network")


class ModelFormatError(ValueError):
    """The file is not the network this reader knows, or is damaged."""


@dataclasses.dataclass(frozen=True)
class Conv:
    """A convolution: ``weights`` (out, in, rows, cols), as cross-correlation; ``bias`` (out,)."""

    weights: np.ndarray
    bias: np.ndarray
    stride: int
    padding: int


@dataclasses.dataclass(frozen=True)
class Affine:
    """Per-channel ``x * gamma + beta`` (dlib's inference form of batch norm)."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclasses.dataclass(frozen=True)
class ResidualBlock:
    """conv, affine, relu, conv, affine, plus the shortcut, then relu.

    A down block (``down``) convolves first at stride 2, and its shortcut is a
    2x2 average pool of the block's input; the sum is zero-filled at the end of
    every dimension where the two differ (dlib's ``add_prev``).
    """

    conv1: Conv
    affine1: Affine
    conv2: Conv
    affine2: Affine
    down: bool


@dataclasses.dataclass(frozen=True)
class FaceNetwork:
    """dlib's face-recognition ResNet, as read from its file.

    :param channel_means: subtracted from the R, G, B channels before dividing by 256.
    :param projection: ``(256, 128)``: the embedding is ``pooled @ projection`` (no bias).
    """

    channel_means: np.ndarray
    chip_size: int
    stem_conv: Conv
    stem_affine: Affine
    stem_pool: tuple[int, int]  # max pool window and stride
    blocks: tuple[ResidualBlock, ...]
    projection: np.ndarray


# (kind, detail) of each layer in forward order; "tag" and "skip" only wire the graph.
_BLOCK_PLAN = ((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 + ((128, True),) + ((128, False),) * 2 \
    + ((256, True),) + ((256, False),) * 2 + ((256, True),)


def _forward_layers() -> list[tuple[str, tuple]]:
    """The architecture, layer by layer from the input (``anet_type`` of dnn_face_recognition_ex.cpp)."""
    layers: list[tuple[str, tuple]] = [("con", (32, 7, 2, 0)), ("affine", ()), ("relu", ()), ("max_pool", (3, 2, 0))]
    for filters, down in _BLOCK_PLAN:
        layers += [("tag", ()), ("con", (filters, 3, 2 if down else 1, 0 if down else 1)), ("affine", ()),
                   ("relu", ()), ("con", (filters, 3, 1, 1)), ("affine", ())]
        if down:
            layers += [("tag", ()), ("skip", ()), ("avg_pool", (2, 2, 0))]
        layers += [("add_prev", ()), ("relu", ())]
    layers += [("avg_pool", (0, 1, 0)), ("fc", (128,))]
    return layers


_LAYER_NAMES = {
    "con": ("con_4", "con_5", "con_6"),
    "affine": ("affine_", "affine_2"),
    "relu": ("relu_", "relu_2"),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "add_prev": ("add_prev_",),
    "fc": ("fc_2", "fc_3"),
}


class _Reader:
    """dlib's serialisation primitives over an in-memory file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise ModelFormatError(f"bad integer control byte {control:#x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise ModelFormatError(f"bad bool {byte!r} at offset {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise ModelFormatError(f"implausible string length {length} at offset {self.pos}")
        return self._take(length).decode("latin-1")

    def tensor(self) -> np.ndarray:
        self.expect(self.integer(), 2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        if any(dim < 0 for dim in shape):
            raise ModelFormatError(f"negative tensor shape {shape}")
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.expect(self.integer(), 1, "alias_tensor version")
        return tuple(self.integer() for _ in range(4))

    def expect(self, found: object, wanted: object, what: str) -> None:
        if found != wanted:
            raise ModelFormatError(f"{what}: expected {wanted!r}, found {found!r} (offset {self.pos})")

    def _take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise ModelFormatError("the file ends in the middle of a record (truncated?)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk


def read_face_network(path: str | os.PathLike[str]) -> FaceNetwork:
    """Read and check the network at ``path``.

    :raises ModelFormatError: the file is not dlib's face-recognition ResNet v1, or is damaged.
    :raises OSError: the file cannot be read.
    """
    return read_dlib_file(path, _read_network, "a dlib face-recognition ResNet v1 file")


def read_dlib_file(path: str | os.PathLike[str], parse: Callable[[_Reader], Network], what: str) -> Network:
    """``parse`` over the bytes of dlib's serialised network at ``path``; a refusal names the file and ``what``
    it should have been."""
    with open(path, "rb") as model_file:
        reader = _Reader(model_file.read())
    try:
        return parse(reader)
    except ModelFormatError as error:
        raise ModelFormatError(f"{os.fspath(path)} is not {what} this service understands: {error}") from None


def _read_network(reader: _Reader) -> FaceNetwork:
    reader.expect(reader.integer(), 1, "loss layer version")
    loss = reader.string()
    if loss == "loss_metric_2":
        reader.real(), reader.real()  # margin and distance threshold: training only
    elif loss != "loss_metric_":
        raise ModelFormatError(f"loss layer {loss!r} is not a metric loss")
    layers = _forward_layers()
    versions = [reader.integer() for _ in layers][::-1]  # outermost first in the file
    for index, ((kind, _), version) in enumerate(zip(layers, versions, strict=True)):
        allowed = (1,) if kind in ("tag", "skip") else (1, 2)
        if index == 0:
            allowed = (2, 3)  # the innermost layer wraps the input layer directly
        if version not in allowed:
            raise ModelFormatError(f"wrapper version {version} for a {kind} layer")

    reader.expect(reader.string(), "input_rgb_image_sized", "input layer")
    means = np.array([reader.real() for _ in range(3)], dtype=np.float32)
    chip_size = reader.integer()
    reader.expect(reader.integer(), chip_size, "chip columns")

    records = iter(_layer_records(reader, layers, versions))
    stem_conv, stem_affine = next(records), next(records)
    max_pool = next(records)
    blocks = []
    for _, down in _BLOCK_PLAN:
        conv1, affine1, conv2, affine2 = next(records), next(records), next(records), next(records)
        if down:
            next(records)  # the shortcut's average pool (2x2, stride 2): checked, fixed by the architecture
        blocks.append(ResidualBlock(conv1, affine1, conv2, affine2, down))
    next(records)  # the global average pool
    projection = next(records)
    if reader.pos != len(reader.data):
        raise ModelFormatError(f"{len(reader.data) - reader.pos} unexpected bytes after the last layer")
    return FaceNetwork(means, chip_size, stem_conv, stem_affine, max_pool, tuple(blocks), projection)


def _layer_records(reader: _Reader, layers: list[tuple[str, tuple]], versions: list[int]) -> Iterator:
    """Each parameterised layer's content in forward order (relu and add_prev yield nothing)."""
    channels = 3
    for index, ((kind, detail), version) in enumerate(zip(layers, versions, strict=True)):
        if kind in ("tag", "skip"):
            continue
        name = reader.string()
        if name not in _LAYER_NAMES[kind]:
            raise ModelFormatError(f"layer {index} should be a {kind} layer, found record {name!r}")
        value = None
        if kind == "con":
            value = _read_conv(reader, name, channels, *detail)
            channels = detail[0]
        elif kind == "affine":
            value = _read_affine(reader, name, channels)
        elif kind == "relu":
            if name == "relu_2":
                reader.expect(reader.boolean(), False, "relu disabled")
        elif kind in ("max_pool", "avg_pool"):
            window, stride, padding = detail
            found = tuple(reader.integer() for _ in range(6))
            reader.expect(found, (window, window, stride, stride, padding, padding), f"{kind} window, stride, padding")
            value = (window, stride)
        elif kind == "fc":
            value = _read_fc(reader, name, channels, *detail)
        _skip_training_state(reader, version, innermost=index == 0)
        if value is not None:
            yield value


def _read_conv(reader: _Reader, name: str, channels: int, filters: int, size: int, stride: int,
               padding: int) -> Conv:
    params = reader.tensor().reshape(-1)
    found = tuple(reader.integer() for _ in range(7))
    reader.expect(found, (filters, size, size, stride, stride, padding, padding),
                  "conv filters, rows, cols, strides, paddings")
    weight_shape, bias_shape = reader.alias(), reader.alias()
    reader.expect(weight_shape, (filters, channels, size, size), "conv filter shape")
    reader.expect(bias_shape, (1, filters, 1, 1), "conv bias shape")
    for _ in range(4):
        reader.real()  # learning-rate and weight-decay multipliers: training only
    if name in ("con_5", "con_6"):
        reader.expect(reader.boolean(), True, "conv use_bias")
    if name == "con_6":
        reader.expect(reader.boolean(), False, "conv use_relu")
    weight_count = filters * channels * size * size
    reader.expect(params.size, weight_count + filters, "conv parameter count")
    weights = params[:weight_count].reshape(filters, channels, size, size)
    return Conv(weights, params[weight_count:], stride, padding)


def _read_affine(reader: _Reader, name: str, channels: int) -> Affine:
    params = reader.tensor().reshape(-1)
    reader.expect(reader.alias(), (1, channels, 1, 1), "affine gamma shape")
    reader.expect(reader.alias(), (1, channels, 1, 1), "affine beta shape")
    reader.expect(reader.integer(), 0, "affine mode (0: per channel)")
    if name == "affine_2":
        reader.expect(reader.boolean(), False, "affine disabled")
    reader.expect(params.size, 2 * channels, "affine parameter count")
    return Affine(params[:channels], params[channels:])


def _read_fc(reader: _Reader, name: str, inputs: int, outputs: int) -> np.ndarray:
    reader.expect((reader.integer(), reader.integer()), (outputs, inputs), "fc outputs and inputs")
    params = reader.tensor().reshape(-1)
    reader.expect(reader.alias(), (inputs, outputs, 1, 1), "fc weight shape")
    reader.alias()  # biases: unused without a bias
    reader.expect(reader.integer(), 1, "fc bias mode (1: no bias)")
    for _ in range(4):
        reader.real()
    if name == "fc_3":
        reader.expect(reader.boolean(), False, "fc use_bias")
    reader.expect(params.size, inputs * outputs, "fc parameter count")
    return params.reshape(inputs, outputs)


def _skip_training_state(reader: _Reader, version: int, *, innermost: bool) -> None:
    """The wrapper's flags and gradient tensors after each layer record (dnn/core.h ``add_layer``)."""
    for _ in range(3):
        reader.boolean()
    for _ in range(3 if innermost or version == 2 else 2):
        reader.tensor()
    if innermost and version == 3:
        reader.integer()  # sample expansion factor
