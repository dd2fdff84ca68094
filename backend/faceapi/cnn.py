"""dlib's CNN face detector (MMOD), run on numpy: dlib's boxes and scores, on BLAS, off the GIL.

dlib's prebuilt wheel runs this network without BLAS and with the GIL held: about 33 s for a
1024 px group photo upsampled once, which no request can wait for. Here the network, read by
`faceapi.mmod_model` from the file the ``face_recognition_models`` package ships, runs as
matrix products (as `faceapi.encoder` runs the face network), and the rest follows dlib
step by step (``input_rgb_image_pyramid``, ``loss_mmod_::to_label``):

1. optional upsampling, ``pyramid_up``: to ``(2h+1) x (2w+2)``, with dlib's own bilinear resize;
2. the input tensor: the image and its pyramid (each level 5/6 of the one before, resized from
   the previous level's float pixels) tiled into one zero-filled image, in two columns;
3. the network over that whole tensor: one score per 8x8 cell;
4. every cell scoring above 0 is an 80x80 window on the pyramid level nearest its centre,
   mapped back to the image, rounded half away from zero, and greedily suppressed against
   stronger ones that overlap it (intersection over the two boxes' bounding box).

tests/test_cnn.py checks the boxes and scores against ``dlib.cnn_face_detection_model_v1``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Callable

import dlib
import numpy as np
from numpy.lib.stride_tricks import as_strided

from faceapi.dlib_model import Affine
from faceapi.dlib_model import Conv
from faceapi.mmod_model import MmodNetwork
from faceapi.mmod_model import read_mmod_detector

# dlib's input_rgb_image_pyramid defaults: padding between levels, and around the tiled image.
_PADDING = 10
_OUTER_PADDING = 11
_MIN_LEVEL_ROWS = 5
# An output cell (r, c) is centred on tensor point (8c + 14, 8r + 14).
_STRIDE = 8
_OFFSET = 14
_U64 = 1 << 64
# Output pixels of the first layer computed per matrix product: its patches (75 floats each) stay in cache.
_CHUNK_PIXELS = 8192
# Bands: tensor pixels per band (its widest layer then holds about 8 MB), the cell rows
# each side of a band that the padded layers need (2 + 2 + 2 for the 5x5 ones, 4 for the head),
# the tensor rows past a band's last cell row that the stride-2 layers read, and how many those are.
_BAND_PIXELS = 1 << 18
_HALO = 10
_DOWNSAMPLED_EXTRA = 21
_DOWNSAMPLING_LAYERS = 3
# Cells per band of the padded layers: each of their maps then holds about 6 MB.
_CELL_BAND_PIXELS = 1 << 15


@dataclasses.dataclass(frozen=True)
class Rect:
    """dlib's inclusive integer rectangle."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return max(0, self.right - self.left + 1) * max(0, self.bottom - self.top + 1)


@dataclasses.dataclass(frozen=True)
class Detection:
    """A face the CNN found: its rectangle in the image (inclusive, may reach past the border) and score."""

    rect: Rect
    confidence: float


class CnnFaceDetector:
    """dlib's MMOD face detector on numpy. Keeps no state between calls: safe to call from many threads."""

    def __init__(self, network: MmodNetwork) -> None:
        self._means = np.array(network.channel_means, dtype=np.float32)
        self._body: list[_ConvLayer] = []
        channels = len(self._means)
        for conv, affine in network.layers[:-1]:
            assert affine is not None  # the reader gives every layer but the head its batch norm
            self._body.append(_ConvLayer(conv, affine, channels))
            channels = self._body[-1].filters
        head, _ = network.layers[-1]
        _, used, size, _ = head.weights.shape
        # The 9x9 head as one product per pixel: (channels) -> (9*9) partial sums, added up shifted.
        self._head = np.zeros((channels, size * size), dtype=np.float32)
        self._head[:used] = head.weights[0].reshape(used, size * size)
        self._head_size = size
        self._head_bias = np.float32(head.bias[0])
        self._window = network.window
        self._nms_iou = network.nms_iou

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CnnFaceDetector:
        """The detector of dlib's model file at ``path``.

        :raises faceapi.dlib_model.ModelFormatError: the file is not the network this reader knows.
        """
        return cls(read_mmod_detector(path))

    def detect(self, image: np.ndarray, upsample: int = 0, threads: int = 1) -> list[Detection]:
        """The faces of an ``(h, w, 3)`` uint8 RGB image, strongest first, as dlib's ``cnn_face_detection_model_v1``
        gives them for ``upsample_num_times=upsample``; ``threads``: bands of the network run at once."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"the image must be (h, w, 3) uint8, not {image.shape} {image.dtype}")
        scanned = image
        for _ in range(upsample):
            scanned = pyramid_up(scanned)
        if min(scanned.shape[:2]) < _PADDING:
            return []  # dlib's tiling breaks down for images under 10 px
        pyramid = self.pyramid(scanned)
        detections = self._detections(self._scores(pyramid, threads=threads), pyramid.levels)
        for _ in range(upsample):
            detections = [Detection(rect_down(d.rect), d.confidence) for d in detections]
        return detections

    def pyramid(self, image: np.ndarray) -> TiledPyramid:
        """The network's input for ``image``: its tiled pyramid, made as the bands ask for it."""
        return TiledPyramid(image, self._means)

    def _scores(self, pyramid: TiledPyramid, band_rows: int | None = None, threads: int = 1) -> np.ndarray:
        """The network over the whole tiled pyramid: ``(rows, cols)`` scores, one per 8x8 cell.

        It runs in two stages, each in horizontal bands of ``band_rows`` score rows (None: sized to
        `_BAND_PIXELS` and `_CELL_BAND_PIXELS`), so the transient memory is bounded whatever the
        image size and the scores are those of one whole pass. First the three stride-2 layers,
        each band from the pyramid rows its outputs see (made for ``threads`` bands at a time, top
        to bottom), into the whole map of 8x8 cells (32 channels: a sixth of the tensor's bytes);
        then the padded layers and the head, each band with the map rows its outputs see.
        ``threads`` bands run at once (the products release the GIL).
        """
        total = _score_rows(pyramid.rows)
        second_rows = band_rows or max(8, _CELL_BAND_PIXELS * _STRIDE // pyramid.cols)
        band_rows = band_rows or max(8, (_BAND_PIXELS // pyramid.cols - _DOWNSAMPLED_EXTRA) // _STRIDE)
        cells, offset, done, scores = None, 0, 0, []
        for first in range(0, total, band_rows * threads):
            last = min(total, first + band_rows * threads)
            rows = pyramid.band(_STRIDE * first, _STRIDE * last + _DOWNSAMPLED_EXTRA)
            pyramid.release_above(_STRIDE * last)
            made = _banded(lambda a, b, rows=rows, first=first: self._downsampled(rows, a - first, b - first),
                           first, last, band_rows, threads)
            cells = np.concatenate(made if cells is None else [cells, *made])
            # The score rows whose halo is now made, then only the cell rows later bands still need.
            ready = total if last == total else last - _HALO
            if ready > done:
                scores += _banded(lambda a, b, cells=cells, offset=offset: self._band_scores(cells, offset, total, a,
                                                                                             b),
                                  done, ready, second_rows, threads)
                done = ready
                kept = max(0, done - _HALO) - offset
                cells, offset = cells[kept:].copy(), offset + kept
        return np.concatenate(scores)

    def _downsampled(self, tensor: np.ndarray, first: int, last: int) -> np.ndarray:
        """Rows [first, last) of the 8x8 cell map of ``tensor`` (rows of the tiled pyramid from a multiple of 8,
        so the layers' grids are the whole pass's): the stride-2 layers on the rows they read."""
        x = tensor[_STRIDE * first:_STRIDE * last + _DOWNSAMPLED_EXTRA]
        for layer in self._body[:_DOWNSAMPLING_LAYERS]:
            x = layer(x)
        return x

    def _band_scores(self, cells: np.ndarray, offset: int, total: int, first: int, last: int) -> np.ndarray:
        """Score rows [first, last) of a map of ``total`` rows, of which ``cells`` holds those from ``offset``:
        the padded layers pad with zero rows only at the map's own top and bottom, and elsewhere use the
        `_HALO` rows each side that the band carries."""
        low, high = max(0, first - _HALO), min(total, last + _HALO)
        x = cells[low - offset:high - offset]
        for layer in self._body[_DOWNSAMPLING_LAYERS:]:
            top, bottom = (layer.padding if low == 0 else 0), (layer.padding if high == total else 0)
            low, high = low + layer.padding - top, high - layer.padding + bottom
            x = layer(x, (top, bottom))
        pad = self._head_size // 2
        top, bottom = (pad if low == 0 else 0), (pad if high == total else 0)
        scores = self._head_scores(x, top, bottom)
        low = low + pad - top
        # Near the top or bottom the padding keeps more rows than the band's own: keep its own.
        return scores[first - low:last - low]

    def _head_scores(self, features: np.ndarray, top: int, bottom: int) -> np.ndarray:
        """The 9x9 head: one product from channels to the 81 taps, then the taps' planes added up shifted."""
        size = self._head_size
        pad = size // 2
        padded = np.pad(features, ((top, bottom), (pad, pad), (0, 0)))
        rows, cols = padded.shape[0] - size + 1, padded.shape[1] - size + 1
        partial = (padded.reshape(-1, padded.shape[2]) @ self._head).reshape(padded.shape[0], padded.shape[1], -1)
        scores = np.full((rows, cols), self._head_bias, dtype=np.float32)
        for i in range(size):
            for j in range(size):
                scores += partial[i:i + rows, j:j + cols, i * size + j]
        return scores

    def _detections(self, scores: np.ndarray, levels: list[Rect]) -> list[Detection]:
        """Windows of cells scoring above 0, mapped to the image, strongest first, overlaps suppressed."""
        half_rows, half_cols = (self._window[0] - 1) / 2, (self._window[1] - 1) / 2
        candidates = []
        for r, c in zip(*np.nonzero(scores > 0), strict=True):
            x, y = _STRIDE * int(c) + _OFFSET, _STRIDE * int(r) + _OFFSET
            index = _nearest_level(levels, x, y)
            level = levels[index]
            corners = [(x - half_cols - level.left, y - half_rows - level.top),
                       (x + half_cols - level.left, y + half_rows - level.top)]
            for _ in range(index):
                corners = [(px * 1.2 + 0.3, py * 1.2 + 0.3) for px, py in corners]
            (left, top), (right, bottom) = corners
            rect = Rect(_lround(left), _lround(top), _lround(right), _lround(bottom))
            candidates.append(Detection(rect, float(scores[r, c])))
        candidates.sort(key=lambda detection: -detection.confidence)
        kept: list[Detection] = []
        for candidate in candidates:
            if not any(self._overlaps(k.rect, candidate.rect) for k in kept):
                kept.append(candidate)
        return kept

    def _overlaps(self, a: Rect, b: Rect) -> bool:
        """dlib's ``test_box_overlap`` at the file's NMS threshold (percent covered 1.0 never fires)."""
        inner = Rect(max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom))
        if inner.right < inner.left or inner.bottom < inner.top:
            return False
        outer = Rect(min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom))
        return inner.area / outer.area > self._nms_iou


class _ConvLayer:
    """A convolution, its folded batch norm and relu, over one ``(rows, cols, channels)`` float32 map.

    Output rows are computed a chunk at a time (about `_CHUNK_PIXELS` outputs), so the patches
    stay small whatever the map's size. In a chunk, each input row is cut into column patches
    once (its ``kernel`` neighbouring pixels at the stride, one array per stride phase of the
    rows), and the output is the sum of one matrix product per kernel row over a contiguous block
    of them: a fifth of im2col's copying at stride 1. With few input channels (the first layer)
    those products would be too thin, so the kernel rows are stacked and multiplied once.
    """

    def __init__(self, conv: Conv, affine: Affine, in_channels: int) -> None:
        """``in_channels``: the channels of the map it reads, past the weights' own ones when the layer
        before was padded (those read as zero weights)."""
        filters, channels, size, _ = conv.weights.shape
        # The affine folded into the weights and bias: one pass over the output less, scores within 1e-5.
        weights = conv.weights * affine.gamma[:, None, None, None]
        # Filters padded to a multiple of 16 (45 -> 48) with zero weights and bias, so that they
        # output zeros: OpenBLAS's float kernels run such widths about 25% faster per product.
        self.filters = -(-filters // 16) * 16
        padded = np.zeros((self.filters, in_channels, size, size), dtype=np.float32)
        padded[:filters, :channels] = weights
        # [kernel row, kernel col * channels + channel, filter]: the patches' order.
        self.rows = np.ascontiguousarray(padded.transpose(2, 3, 1, 0).reshape(size, size * in_channels, -1))
        self.bias = np.zeros(self.filters, dtype=np.float32)
        self.bias[:filters] = conv.bias * affine.gamma + affine.beta
        self.size, self.stride, self.padding = size, conv.stride, conv.padding
        self.stacked = size * in_channels < 64

    def __call__(self, x: np.ndarray, row_padding: tuple[int, int] | None = None) -> np.ndarray:
        """The layer over ``x``; ``row_padding`` (top, bottom) zero rows instead of the layer's own padding."""
        size, stride, pad = self.size, self.stride, self.padding
        top, bottom = (pad, pad) if row_padding is None else row_padding
        if pad or top or bottom:
            x = np.pad(x, ((top, bottom), (pad, pad), (0, 0)))
        rows, cols, _ = x.shape
        out_rows, out_cols = (rows - size) // stride + 1, (cols - size) // stride + 1
        out = np.empty((out_rows * out_cols, self.rows.shape[2]), dtype=np.float32)
        chunk = max(1, _CHUNK_PIXELS // out_cols)
        for first in range(0, out_rows, chunk):
            count = min(chunk, out_rows - first)
            start = stride * first
            self._chunk(x[start:start + stride * (count - 1) + size], count, out_cols,
                        out[first * out_cols:(first + count) * out_cols])
        out += self.bias
        np.maximum(out, 0, out=out)
        return out.reshape(out_rows, out_cols, -1)

    def _chunk(self, x: np.ndarray, count: int, out_cols: int, out: np.ndarray) -> None:
        """``count`` output rows from the input rows they read, into ``out`` ``(count * out_cols, filters)``."""
        size, stride = self.size, self.stride
        rows, cols, channels = x.shape
        flat = np.ascontiguousarray(x).reshape(rows, cols * channels)
        row_step, item = flat.strides
        width = size * channels
        if self.stacked:
            # Every patch at once: (output row, output col, kernel row, kernel col * channels + channel).
            patches = as_strided(flat, (count, out_cols, size, width),
                                 (stride * row_step, stride * channels * item, row_step, item), writeable=False)
            np.matmul(patches.reshape(count * out_cols, size * width), self.rows.reshape(size * width, -1), out=out)
            return
        # Each input row's column patches (kernel col * channels + channel, one contiguous run in the row),
        # copied once per stride phase of the rows: kernel row i reads phase i % stride from its row i // stride on.
        windows = as_strided(flat, (rows, out_cols, width), (row_step, stride * channels * item, item),
                             writeable=False)
        phases = [np.ascontiguousarray(windows[p::stride]) for p in range(stride)]
        for i in range(size):
            block = phases[i % stride][i // stride:i // stride + count]
            part = block.reshape(count * out_cols, width) @ self.rows[i]
            if i == 0:
                out[...] = part
            else:
                out += part


def tiled_pyramid_layout(rows: int, cols: int) -> tuple[list[Rect], int, int]:
    """Where each pyramid level of a ``rows x cols`` image sits in the tiled tensor, and the tensor's size.

    dlib's ``compute_tiled_image_pyramid_details`` for ``pyramid_down<6>``, padding 10 and outer
    padding 11, with its unsigned comparisons.
    """
    sizes = [(rows, cols)]
    while True:
        rows, cols = (5 * rows) // 6, (5 * cols) // 6
        if rows * cols == 0 or rows < _MIN_LEVEL_ROWS:
            break
        sizes.append((rows, cols))
    first_rows, first_cols = sizes[0]
    total = sum(h + _PADDING for h, _ in sizes) - 2 * _PADDING
    height, previous_cols = 0, 0
    for h, w in sizes:
        if w <= (first_cols - previous_cols - _PADDING) % _U64 and \
                (2 * (height - first_rows)) % _U64 >= (total - first_rows) % _U64:
            break
        height += h + _PADDING
        previous_cols = w
    height -= _PADDING
    levels: list[Rect] = []
    y = _OUTER_PADDING
    for h, w in sizes:
        if y >= height + _OUTER_PADDING:
            break
        levels.append(Rect(_OUTER_PADDING, y, _OUTER_PADDING + w - 1, y + h - 1))
        y += h + _PADDING
    y -= _PADDING
    first = levels[0]
    for h, w in sizes[len(levels):]:
        right, bottom = _OUTER_PADDING + first_cols - 1, y - 1
        rect = Rect(right - (w - 1), bottom - (h - 1), right, bottom)
        if rect.left <= first.right and first.left <= rect.right and rect.top <= first.bottom \
                and first.top <= rect.bottom:
            break
        levels.append(rect)
        y -= h + _PADDING
    return levels, height + 2 * _OUTER_PADDING, first_cols + 2 * _OUTER_PADDING


def _banded(compute: Callable[[int, int], np.ndarray], first: int, last: int, band_rows: int,
            threads: int) -> list[np.ndarray]:
    """``compute(a, b)`` over rows [first, last) in bands of ``band_rows`` (fewer when that gives each of
    ``threads`` a band), ``threads`` bands at once."""
    band_rows = max(1, min(band_rows, -(-(last - first) // threads)))
    bands = [(a, min(last, a + band_rows)) for a in range(first, last, band_rows)]
    if threads > 1 and len(bands) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda band: compute(*band), bands))
    return [compute(a, b) for a, b in bands]


class TiledPyramid:
    """dlib's tiled input tensor (`tiled_pyramid_layout`), made a band of rows at a time.

    The whole tensor holds 3.7 times the image's pixels at 12 bytes each: 130 MB for a 3 MP
    scan. Here the rows of level 0 are normalised from the image when a band needs them, and
    each further level is resized from the one before (as dlib does: a float plane at a time,
    with its bilinear resize) when first needed, and dropped once the bands are past it and the
    next level is made. It holds about two levels at a time; the rows it gives are dlib's.
    """

    def __init__(self, image: np.ndarray, means: np.ndarray) -> None:
        self.levels, self.rows, self.cols = tiled_pyramid_layout(*image.shape[:2])
        self._image, self._means = image, means
        self._made: dict[int, np.ndarray] = {}

    def band(self, first: int, last: int) -> np.ndarray:
        """Rows [first, last) of the tensor (fewer at its bottom): ``(rows, cols, 3)`` float32."""
        last = min(last, self.rows)
        band = np.zeros((last - first, self.cols, 3), dtype=np.float32)
        for index, level in enumerate(self.levels):
            top, bottom = max(first, level.top), min(last, level.bottom + 1)
            if top < bottom:
                band[top - first:bottom - first, level.left:level.right + 1] = self._level_rows(
                    index, top - level.top, bottom - level.top)
        return band

    def release_above(self, row: int) -> None:
        """Drop the levels no band from tensor row ``row`` on needs: above it, with the next level made."""
        for index in list(self._made):
            if self.levels[index].bottom < row and (index + 1 in self._made or index + 1 == len(self.levels)):
                del self._made[index]

    def _level_rows(self, index: int, first: int, last: int) -> np.ndarray:
        if index == 0:
            return (self._image[first:last] - self._means) / np.float32(256)
        if index not in self._made:
            target = self.levels[index]
            rows, cols = target.bottom - target.top + 1, target.right - target.left + 1
            made = np.empty((rows, cols, 3), dtype=np.float32)
            for channel in range(3):
                made[..., channel] = dlib.resize_image(self._plane(index - 1, channel), rows, cols)
            self._made[index] = made
        return self._made[index][first:last]

    def _plane(self, index: int, channel: int) -> np.ndarray:
        """One channel of a whole level, contiguous, as dlib resizes it."""
        if index == 0:
            return np.ascontiguousarray((self._image[..., channel] - self._means[channel]) / np.float32(256))
        level = self.levels[index]
        return np.ascontiguousarray(self._level_rows(index, 0, level.bottom - level.top + 1)[..., channel])


def _score_rows(tensor_rows: int) -> int:
    """Rows of the score map of a tensor of ``tensor_rows``: three unpadded 5x5 convolutions at stride 2."""
    rows = tensor_rows
    for _ in range(3):
        rows = (rows - 5) // 2 + 1
    return rows


def _nearest_level(levels: list[Rect], x: int, y: int) -> int:
    """dlib's ``nearest_rect``: the first level containing the point, else the nearest (first on ties)."""
    best, best_distance = 0, math.inf
    for index, level in enumerate(levels):
        if level.left <= x <= level.right and level.top <= y <= level.bottom:
            return index
        dx = max(level.left - x, 0, x - level.right)
        dy = max(level.top - y, 0, y - level.bottom)
        distance = math.hypot(dx, dy)
        if distance < best_distance:
            best, best_distance = index, distance
    return best


def pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_up`` for ``pyramid_down<2>``, as its detectors upsample: to ``(2h+1) x (2w+2)``,
    with its bilinear resize."""
    rows, cols = image.shape[:2]
    return dlib.resize_image(np.ascontiguousarray(image), 2 * rows + 1, 2 * cols + 2)


def rect_down(rect: Rect) -> Rect:
    """``pyramid_down<2>::rect_down``: a rectangle of the upsampled image in the image it was made from."""
    return Rect(_lround(rect.left / 2 - 1.25), _lround(rect.top / 2 - 0.75),
                _lround(rect.right / 2 - 1.25), _lround(rect.bottom / 2 - 0.75))


def _lround(value: float) -> int:
    """C's ``lround``: to the nearest integer, halves away from zero."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)
