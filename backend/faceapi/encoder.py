"""dlib's face-recognition ResNet, run on numpy: the same 128 numbers, on BLAS, off the GIL.

dlib's prebuilt wheel has no BLAS and holds the GIL for a whole encoding, so a
worker's threads never encoded in parallel. Here each convolution is one matrix
product (im2col, then ``@``, which numpy hands to its bundled OpenBLAS with the
GIL released), and the weights, read by `faceapi.dlib_model` from the file the
``face_recognition_models`` package ships, are loaded once before fork and
shared by every worker. Results match dlib's ``compute_face_descriptor`` to
float32 rounding (tests/test_encoder.py measures the largest difference).

Activations are ``(faces, rows, cols, channels)`` float32, so that several faces go
through each layer in one product: `BATCH_FACES` at a time, which is as fast per face
as larger batches (bench/encoder_runtimes.py) and bounds the transient memory of a
call at about 15 MB, whatever the number of faces in the photo.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from faceapi.dlib_model import Affine
from faceapi.dlib_model import Conv
from faceapi.dlib_model import FaceNetwork
from faceapi.dlib_model import read_face_network

BATCH_FACES = 4


class _ConvAffine:
    """A convolution followed by its per-channel affine, as one im2col matrix product.

    The affine is applied after the product, as dlib does, rather than folded into
    the weights, which would round differently.
    """

    def __init__(self, conv: Conv, affine: Affine) -> None:
        filters, channels, size, _ = conv.weights.shape
        # Rows ordered (kernel row, kernel col, channel), the order of the patches built in `__call__`.
        self.matrix = np.ascontiguousarray(conv.weights.transpose(2, 3, 1, 0).reshape(size * size * channels, filters))
        self.bias = np.array(conv.bias, dtype=np.float32)
        self.gamma = np.array(affine.gamma, dtype=np.float32)
        self.beta = np.array(affine.beta, dtype=np.float32)
        self.size, self.stride, self.padding = size, conv.stride, conv.padding

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.padding:
            pad = self.padding
            x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        faces, _, _, channels = x.shape
        windows = sliding_window_view(x, (self.size, self.size), axis=(1, 2))[:, :: self.stride, :: self.stride]
        rows, cols = windows.shape[1:3]
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(faces * rows * cols, self.size * self.size * channels)
        out = patches @ self.matrix
        out += self.bias
        out *= self.gamma
        out += self.beta
        return out.reshape(faces, rows, cols, -1)


class FaceEncoder:
    """Turns aligned 150x150 RGB face chips into dlib's 128-d encodings. Safe to call from many threads."""

    def __init__(self, network: FaceNetwork) -> None:
        self.chip_size = network.chip_size
        self._means = np.array(network.channel_means, dtype=np.float32)
        self._stem = _ConvAffine(network.stem_conv, network.stem_affine)
        self._stem_pool = network.stem_pool
        self._blocks = [(_ConvAffine(b.conv1, b.affine1), _ConvAffine(b.conv2, b.affine2), b.down)
                        for b in network.blocks]
        self._projection = np.ascontiguousarray(network.projection, dtype=np.float32)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaceEncoder:
        """The encoder of dlib's model file at ``path``.

        :raises faceapi.dlib_model.ModelFormatError: the file is not the network this reader knows.
        """
        return cls(read_face_network(path))

    def encode(self, chips: np.ndarray) -> np.ndarray:
        """``(n, 150, 150, 3)`` uint8 RGB chips -> ``(n, 128)`` float64 encodings."""
        if chips.ndim != 4 or chips.shape[1:] != (self.chip_size, self.chip_size, 3):
            raise ValueError(f"chips must be (n, {self.chip_size}, {self.chip_size}, 3), not {chips.shape}")
        batches = [self._encode_batch(chips[start : start + BATCH_FACES])
                   for start in range(0, len(chips), BATCH_FACES)]
        return np.concatenate(batches) if batches else np.empty((0, self._projection.shape[1]))

    def _encode_batch(self, chips: np.ndarray) -> np.ndarray:
        x = (chips.astype(np.float32) - self._means) / np.float32(256)
        x = np.maximum(self._stem(x), 0)
        x = _max_pool(x, *self._stem_pool)
        for first, second, down in self._blocks:
            branch = second(np.maximum(first(x), 0))
            x = np.maximum(_add_zero_filled(branch, _avg_pool_2x2(x) if down else x), 0)
        pooled = x.mean(axis=(1, 2), dtype=np.float32)
        return (pooled @ self._projection).astype(np.float64)


def _max_pool(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    return sliding_window_view(x, (window, window), axis=(1, 2))[:, ::stride, ::stride].max(axis=(-2, -1))


def _avg_pool_2x2(x: np.ndarray) -> np.ndarray:
    """2x2 average, stride 2; a last odd row or column is dropped (no padding at stride 2)."""
    faces, rows, cols, channels = x.shape
    rows, cols = rows // 2, cols // 2
    return x[:, : 2 * rows, : 2 * cols].reshape(faces, rows, 2, cols, 2, channels).mean(axis=(2, 4), dtype=np.float32)


def _add_zero_filled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's ``add_prev``: the sum takes the larger size in each dimension; the smaller input is zero-filled
    at the end."""
    if a.shape == b.shape:
        return a + b
    out = np.zeros(np.maximum(a.shape, b.shape), dtype=np.float32)
    out[tuple(slice(0, n) for n in a.shape)] += a
    out[tuple(slice(0, n) for n in b.shape)] += b
    return out
