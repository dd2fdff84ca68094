"""HEIC/HEIF photos decoded a row of tiles at a time, and reduced as they are read.

A phone's HEIC is a grid of small pictures (512x512 on an iPhone). libheif, as pillow-heif calls it,
decodes the whole grid into one YUV picture and then converts it to RGB: a 24 MP photo holds 111 MB.
The scan needs a photo of about 2 000 px, so here each row of tiles is decoded on its own (libheif's
tile API, through the libheif that pillow-heif's wheel ships, with ctypes) and averaged over k x k
blocks at once: a 24 MP photo holds about 25 MB. Orientation is applied by libheif (the tiles come in
the coordinates of the picture as displayed). Where the tile API cannot be had, or refuses the file
(an HDR picture, a libheif without it), the caller decodes the file whole.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np
import pillow_heif

# Tiles outside these bounds go to the whole decode and its limit: a row of them is held at once, and each
# is a call into libheif.
MAX_TILE_PIXELS = 2048 * 2048
MIN_TILE_SIDE = 64
_COLORSPACE_RGB = 1
_CHROMA_INTERLEAVED_RGB = 10
_CHANNEL_INTERLEAVED = 10


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


class _Tiling(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("num_columns", ctypes.c_uint32), ("num_rows", ctypes.c_uint32),
                ("tile_width", ctypes.c_uint32), ("tile_height", ctypes.c_uint32),
                ("image_width", ctypes.c_uint32), ("image_height", ctypes.c_uint32),
                ("top_offset", ctypes.c_uint32), ("left_offset", ctypes.c_uint32),
                ("number_of_extra_dimensions", ctypes.c_uint8), ("extra_dimension_size", ctypes.c_uint32 * 8)]


class TilesUnavailable(RuntimeError):
    """The tile API cannot decode this file here; decode it whole instead."""


@functools.cache
def _libheif() -> ctypes.CDLL | None:
    """The libheif of pillow-heif's wheel (already loaded by it), with the signatures used here."""
    libs = os.path.join(os.path.dirname(pillow_heif.__file__), os.pardir, "pillow_heif.libs")
    found = glob.glob(os.path.join(libs, "libheif*.so*"))
    if not found:
        return None
    lib = ctypes.CDLL(found[0])
    pointer, handle_out = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    signatures = {
        "heif_context_alloc": ([], pointer),
        "heif_context_free": ([pointer], None),
        "heif_context_read_from_memory_without_copy": ([pointer, ctypes.c_char_p, ctypes.c_size_t, pointer], _Error),
        "heif_context_get_primary_image_handle": ([pointer, handle_out], _Error),
        "heif_image_handle_release": ([pointer], None),
        "heif_image_handle_get_image_tiling": ([pointer, ctypes.c_int, ctypes.POINTER(_Tiling)], _Error),
        "heif_image_handle_decode_image_tile": ([pointer, handle_out, ctypes.c_int, ctypes.c_int, pointer,
                                                 ctypes.c_uint32, ctypes.c_uint32], _Error),
        "heif_image_get_plane_readonly2": ([pointer, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)],
                                           ctypes.POINTER(ctypes.c_uint8)),
        "heif_image_get_width": ([pointer, ctypes.c_int], ctypes.c_int),
        "heif_image_get_height": ([pointer, ctypes.c_int], ctypes.c_int),
        "heif_image_release": ([pointer], None),
    }
    try:
        for name, (arguments, result) in signatures.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = arguments, result
    except AttributeError:  # a libheif older than its tile API (1.19)
        return None
    return lib


def decode_reduced(data: bytes, side: int) -> tuple[np.ndarray, int, int]:
    """The primary picture as displayed, averaged over the largest k x k blocks that keep its longest side at
    least ``side`` (k >= 1); with its full width and height.

    :raises TilesUnavailable: no tile API here, it refuses this file, or the file is one picture (no tiles).
    """
    lib = _libheif()
    if lib is None:
        raise TilesUnavailable("libheif's tile API is not available")
    context = lib.heif_context_alloc()
    handle = ctypes.c_void_p()
    try:
        _check(lib.heif_context_read_from_memory_without_copy(context, data, len(data), None))
        _check(lib.heif_context_get_primary_image_handle(context, ctypes.byref(handle)))
        tiling = _Tiling(version=1)
        _check(lib.heif_image_handle_get_image_tiling(handle, 1, ctypes.byref(tiling)))
        width, height = tiling.image_width, tiling.image_height
        if not width or not height or tiling.number_of_extra_dimensions:
            raise TilesUnavailable("not a plain two-dimensional picture")
        if tiling.num_columns * tiling.num_rows == 1:  # decoded whole either way: pillow-heif does it leaner
            raise TilesUnavailable("one picture, not tiles")
        if not _tiles_fit(tiling):
            raise TilesUnavailable("tiles this size are not decoded a row at a time")
        block = max(1, max(width, height) // max(1, side))
        return _reduced_rows(lib, handle, tiling, block), width, height
    finally:
        if handle:
            lib.heif_image_handle_release(handle)
        lib.heif_context_free(context)


def _tiles_fit(tiling: _Tiling) -> bool:
    """Tiles that cover the picture, none so large that a row of them holds too much (phones write 512 x 512)
    nor so small that there are thousands of calls to make."""
    return (MIN_TILE_SIDE <= min(tiling.tile_width, tiling.tile_height)
            and tiling.tile_width * tiling.tile_height <= MAX_TILE_PIXELS
            and tiling.num_columns * tiling.tile_width >= tiling.image_width
            and tiling.num_rows * tiling.tile_height >= tiling.image_height)


def _reduced_rows(lib: ctypes.CDLL, handle: ctypes.c_void_p, tiling: _Tiling, block: int) -> np.ndarray:
    """Each row of tiles decoded, placed, and averaged over ``block`` x ``block`` pixels; rows left over from
    one band's blocks are carried into the next."""
    width, height = tiling.image_width, tiling.image_height
    # A grid's tiles cover more than the picture; turned, the cover sticks out at the top or the left, which
    # libheif reports as a non-zero offset (its value has varied between versions: the size decides).
    shift_top = tiling.num_rows * tiling.tile_height - height if tiling.top_offset else 0
    shift_left = tiling.num_columns * tiling.tile_width - width if tiling.left_offset else 0
    columns = width // block * block
    reduced = np.empty((height // block, width // block, 3), np.uint8)
    done, carried = 0, np.empty((0, width, 3), np.uint8)
    for row in range(tiling.num_rows):
        top = row * tiling.tile_height - shift_top
        rows = slice(max(top, 0), min(top + tiling.tile_height, height))
        if rows.start >= rows.stop:
            continue
        band = np.zeros((rows.stop - rows.start, width, 3), np.uint8)
        for column in range(tiling.num_columns):
            _place_tile(lib, handle, row, column, column * tiling.tile_width - shift_left, band, rows.start - top)
        band = np.concatenate([carried, band]) if len(carried) else band
        whole = len(band) // block * block
        if whole:
            reduced[done:done + whole // block] = _block_means(band[:whole, :columns], block)
            done += whole // block
        carried = band[whole:].copy()
    return reduced[:done]


def _block_means(pixels: np.ndarray, block: int) -> np.ndarray:
    """The rounded mean of each ``block`` x ``block`` square of ``pixels`` (whose sides are multiples of it),
    summed one offset at a time from strided views: no copy of ``pixels`` is made."""
    if block == 1:
        return pixels
    sums = np.zeros((pixels.shape[0] // block, pixels.shape[1] // block, 3), np.uint32)
    for row in range(block):
        for column in range(block):
            sums += pixels[row::block, column::block]
    return ((sums + block * block // 2) // (block * block)).astype(np.uint8)


def _place_tile(lib: ctypes.CDLL, handle: ctypes.c_void_p, row: int, column: int, left: int, band: np.ndarray,
                skip_rows: int) -> None:
    """Decode tile (column, row) as 8-bit RGB and copy its part inside the picture into ``band``, its first
    column at ``left`` and its row ``skip_rows`` at the band's first."""
    image = ctypes.c_void_p()
    _check(lib.heif_image_handle_decode_image_tile(handle, ctypes.byref(image), _COLORSPACE_RGB,
                                                   _CHROMA_INTERLEAVED_RGB, None, column, row))
    try:
        tile_width = lib.heif_image_get_width(image, _CHANNEL_INTERLEAVED)
        tile_height = lib.heif_image_get_height(image, _CHANNEL_INTERLEAVED)
        stride = ctypes.c_size_t()
        plane = lib.heif_image_get_plane_readonly2(image, _CHANNEL_INTERLEAVED, ctypes.byref(stride))
        if not plane or tile_width <= 0 or tile_height <= 0:
            raise TilesUnavailable("a tile has no 8-bit RGB plane")
        rows = np.ctypeslib.as_array(plane, shape=(tile_height * stride.value,)).reshape(tile_height, stride.value)
        pixels = rows[:, :tile_width * 3].reshape(tile_height, tile_width, 3)
        first, last = max(left, 0), min(left + tile_width, band.shape[1])
        wanted = min(len(band), tile_height - skip_rows)
        if first < last and wanted > 0:
            band[:wanted, first:last] = pixels[skip_rows:skip_rows + wanted, first - left:last - left]
    finally:
        lib.heif_image_release(image)


def _check(error: _Error) -> None:
    if error.code:
        message = (error.message or b"").decode("utf-8", "replace")
        raise TilesUnavailable(f"libheif: {message} ({error.code}.{error.subcode})")
