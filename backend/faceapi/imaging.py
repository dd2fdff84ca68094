"""Decode uploaded bytes into a bounded, upright RGB pixel array.

Cost and memory per request are bounded here, before any pixel is decoded: the
declared size is checked against a pixel limit, large JPEGs (Ultra HDR and other
MPF files included) are decoded straight to a reduced size (JPEG draft mode scales
by 1/2, 1/4 or 1/8 inside the decoder), and the result is shrunk to a longest side.
Boxes found on that copy map back to the uploaded image through `DecodedImage.scale`.

A phone's HEIC is tiles: `faceapi.heif` decodes a row of them at a time, reduced as it
goes. The other formats cannot be decoded in parts, so each goes to the decoder that
holds the fewest bytes a pixel (docs/BENCHMARKS.md, "Choosing the decoders"): AVIF
and WebP to libavif and libwebp (imagecodecs), writing 3 bytes a pixel straight into
one array, where Pillow holds 4 and, for WebP, copies the frame twice; a HEIC of one
picture to libheif whole (pillow-heif); the rest (PNG, GIF, TIFF, ...) to Pillow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import warnings
from collections.abc import Callable

import dlib
import imagecodecs
import numpy as np
import pillow_heif
import simplejpeg
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from faceapi import heif

# How far over ``max_side_px`` a decoded image may be and still be used without shrinking.
KEEP_OVER_BOUND = 1.3
# A photo of more pixels than this is large: decoded at full size, it goes through `_decode_whole_jpeg`,
# and the pipeline analyses it in the host's one large turn (`faceapi.memory.host_wide_turn`).
LARGE_IMAGE_PIXELS = 4_000_000


# Pillow reads HEIC/HEIF headers (size, orientation) through pillow-heif; `_decode_heif` decodes the pixels.
pillow_heif.register_heif_opener()
pillow_heif.options.DECODE_THREADS = 1
# The formats Pillow names that libjpeg decodes reduced: an MPO is a JPEG with more pictures after its
# first (a phone's Ultra HDR gain map, a camera's large preview), which only the first is read of.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# Formats decoded a part at a time, so taken up to FACEAPI_MAX_IMAGE_PIXELS: a HEIC that is one
# picture, not tiles, is decoded whole and held to the full-decode limit when that is known (`_decode_heif`).
_DECODED_IN_PARTS = _JPEG_FORMATS | {"HEIF"}
SUPPORTED_FORMATS = "JPEG, HEIC, AVIF, WebP, PNG, GIF, BMP or TIFF"


class UnreadableImage(ValueError):
    """The bytes are not an image Pillow can decode completely."""


class ImageTooLarge(ValueError):
    """The image declares more pixels than the configured limit."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What an upload's header says, before any pixel is decoded.

    :param width: width as stored (before EXIF orientation), in pixels.
    :param height: height as stored, in pixels.
    :param reducible: the decoder can decode it reduced (JPEG): a smaller side holds fewer pixels.
        (A tiled HEIC is too, but whether a HEIC is tiled is known only once it is opened: it counts
        as decoded whole.)
    """

    width: int
    height: int
    reducible: bool

    def pixels_held(self, side: int) -> int:
        """Pixels the decoder holds at once to give an image of longest side ``side``."""
        if not self.reducible:
            return self.width * self.height
        return round(self.width * self.height * min(1.0, side / max(self.width, self.height)) ** 2)


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """An upright RGB copy of an upload, at most a given longest side.

    :param pixels: ``(height, width, 3)`` uint8 array, C-contiguous.
    :param width: width of the uploaded image after EXIF orientation, in pixels.
    :param height: height of the uploaded image after EXIF orientation, in pixels.
    :param scale: uploaded pixels per pixel of ``pixels`` (1.0 when not shrunk).
    """

    pixels: np.ndarray
    width: int
    height: int
    scale: float


def decode_image(
    data: bytes,
    *,
    max_side_px: int | Callable[[Header], int],
    max_pixels: int,
    max_full_decode_pixels: int | None = None,
) -> DecodedImage:
    """Decode ``data``, apply its EXIF orientation, convert to RGB and bound its longest side.

    Animated and multi-page images give their first frame.

    :param max_side_px: longest side of the returned pixels, or a function of the image's
        `Header` that gives it; smaller images are not enlarged, and images (after JPEG draft
        decoding) up to ``KEEP_OVER_BOUND`` times larger are not shrunk.
    :param max_pixels: largest ``width * height`` accepted, checked from the header alone.
    :param max_full_decode_pixels: largest ``width * height`` accepted for formats that must be
        decoded at full size (all but JPEG, which draft mode decodes reduced): this bounds a
        request's memory at about 3-5 bytes per pixel. None: ``max_pixels`` alone.
    :raises UnreadableImage: empty, not an image, truncated or corrupt.
    :raises ImageTooLarge: more than ``max_pixels`` pixels (or ``max_full_decode_pixels``).
    """
    if not data:
        raise UnreadableImage("the upload is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns about files that are odd but decodable (a corrupt EXIF block, a header over
            # its bomb threshold, which our own pixel limit handles): decode them, whatever the
            # process's warning filters say. Only "ignore" filters are added, so the known race of
            # catch_warnings between threads can at worst leave them installed.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                _check_size(image, max_pixels, max_full_decode_pixels)
                if image.format == "HEIF":
                    return _decode_heif(data, image.size, max_side_px, max_pixels, max_full_decode_pixels)
                return _decode_opened(image, data, max_side_px=max_side_px)
    except (ImageTooLarge, UnreadableImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image declares too many pixels; the limit is {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(f"the upload is not an image in a supported format ({SUPPORTED_FORMATS})") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, RuntimeError) as exc:
        # Pillow reports truncated and corrupt files through all of these; libheif (pillow-heif) through
        # ValueError and RuntimeError; imagecodecs' codec errors are RuntimeErrors.
        raise UnreadableImage("the image is truncated or corrupt") from exc


def _check_size(image: Image.Image, max_pixels: int, max_full_decode_pixels: int | None) -> None:
    """Refuse, from the header, an image of more pixels than the limits let this request decode."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UnreadableImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image has {width}x{height} pixels; the limit is {max_pixels} pixels")
    if image.format not in _DECODED_IN_PARTS:
        _check_whole_decode(image.format, width, height, max_pixels, max_full_decode_pixels)


def _check_whole_decode(kind: str | None, width: int, height: int, max_pixels: int,
                        max_full_decode_pixels: int | None) -> None:
    """Refuse a photo that must be decoded whole (3-5 bytes a pixel) and is larger than that limit allows."""
    if max_full_decode_pixels is not None and width * height > max_full_decode_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} pixels; {kind} photos like this one are decoded at full size, so they "
            f"are taken up to {max_full_decode_pixels} pixels (JPEG up to {max_pixels}): send it as a JPEG (an "
            "iPhone writes JPEG under Settings > Camera > Formats > Most Compatible), or smaller")


def _decode_opened(image: Image.Image, data: bytes, *, max_side_px: int | Callable[[Header], int]) -> DecodedImage:
    width, height = image.size
    jpeg = image.format in _JPEG_FORMATS
    if callable(max_side_px):
        max_side_px = max_side_px(Header(width, height, reducible=jpeg))
    array_decoder = _ARRAY_DECODERS.get(image.format or "")
    if array_decoder is not None:
        return _from_array(array_decoder(data), _orientation(image), max_side_px)
    if jpeg and image.mode == "RGB" and max(width, height) <= 2 * max_side_px \
            and width * height > LARGE_IMAGE_PIXELS:
        return _decode_whole_jpeg(image, data, max_side_px)
    if jpeg and max(width, height) > max_side_px:
        # Decode at the smallest DCT scale that is still at least max_side_px long.
        ratio = max_side_px / max(width, height)
        image.draft("RGB", (max(1, int(width * ratio)), max(1, int(height * ratio))))
    image.load()
    decoded_size = image.size
    _make_upright(image)
    # A 90-degree orientation swaps the sides; compare shapes, since draft mode may have shrunk both.
    turned = image.size != decoded_size
    upright_width, upright_height = (height, width) if turned else (width, height)
    # A decoded copy at most KEEP_OVER_BOUND over the bound is used as it is: shrinking it would cost
    # 20-40 ms (docs/ENCODER.md), more than the few extra pixels cost downstream.
    bound = max(image.size) if max(image.size) <= KEEP_OVER_BOUND * max_side_px else max_side_px
    if image.mode in _RESAMPLABLE_MODES:
        # Shrink first (in place), so that any mode conversion copies the small image, not the upload.
        image.thumbnail((bound, bound), Image.Resampling.BILINEAR, reducing_gap=None)
    rgb = image if image.mode == "RGB" else _to_rgb(image)
    rgb.thumbnail((bound, bound), Image.Resampling.BILINEAR, reducing_gap=None)
    pixels = np.asarray(rgb, dtype=np.uint8)
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        width=upright_width,
        height=upright_height,
        scale=max(upright_width, upright_height) / max(rgb.size),
    )


def _decode_whole_jpeg(image: Image.Image, data: bytes, max_side_px: int) -> DecodedImage:
    """A large colour JPEG that its scan needs at full size (no draft scale is small enough), decoded by
    libjpeg-turbo straight into an array (simplejpeg), then brought to ``max_side_px`` at once.

    The same pixels as Pillow's decoder, which would first fill its own 4-byte-a-pixel image and
    then copy it: a 12 MP photo peaks at 35 MB here against about 100 MB (docs/BENCHMARKS.md).
    Shrunk now (dlib's bilinear resize, the one the detectors use), the copy a request holds is
    the one its scan reads, not the upload's size and a scanned copy beside it.
    """
    width, height = image.size
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
    if pixels.shape[:2] != (height, width):
        raise UnreadableImage("the image is truncated or corrupt")
    return _from_array(pixels, _orientation(image), max_side_px)


def _from_array(pixels: np.ndarray, orientation: int, max_side_px: int,
                full_size: tuple[int, int] | None = None) -> DecodedImage:
    """A decoder's ``(height, width, channels)`` array as upright RGB of at most ``max_side_px``: shrunk
    first, so that only the small copy is turned. ``full_size``: the photo's (width, height) when the
    decoder already reduced it (upright), else the array's."""
    pixels = _rgb_array(pixels)
    height, width = pixels.shape[:2]
    if max(width, height) > max_side_px:
        pixels = shrunk(pixels, max_side_px / max(width, height))
    pixels = np.ascontiguousarray(_oriented(pixels, orientation))
    if full_size is not None:
        width, height = full_size
    upright_width, upright_height = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(pixels=pixels, width=upright_width, height=upright_height,
                        scale=max(upright_width, upright_height) / max(pixels.shape[:2]))


def _rgb_array(pixels: np.ndarray) -> np.ndarray:
    """Grey, grey+alpha, RGB or RGBA of 8 to 16 bits as 8-bit RGB; transparency over white, as `_to_rgb`."""
    if pixels.dtype != np.uint8:  # 10- and 12-bit AVIF and HEIF come as 16-bit integers
        pixels = (pixels >> (4 if pixels.max(initial=0) > 1023 else 2)).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] in (2, 4):
        alpha = pixels[:, :, -1:].astype(np.uint16)
        pixels = ((pixels[:, :, :-1] * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _decode_heif(data: bytes, size: tuple[int, int], max_side_px: int | Callable[[Header], int], max_pixels: int,
                 max_full_decode_pixels: int | None) -> DecodedImage:
    """The primary picture of a HEIC/HEIF file, turned as its container says (libheif applies it): a row of
    tiles at a time, reduced as it comes (`faceapi.heif`); decoded whole where that cannot be done."""
    width, height = size
    if callable(max_side_px):  # the turn is taken as for a whole decode: tiles are not known yet
        max_side_px = max_side_px(Header(width, height, reducible=False))
    try:
        pixels, full_width, full_height = heif.decode_reduced(data, max_side_px)
    except heif.TilesUnavailable:
        _check_whole_decode("HEIF", width, height, max_pixels, max_full_decode_pixels)
        return _from_array(np.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True)), 1, max_side_px)
    return _from_array(pixels, 1, max_side_px, full_size=(full_width, full_height))


def _decode_avif(data: bytes) -> np.ndarray:
    """The first picture of an AVIF file, decoded on one thread (dav1d's threads each hold frames)."""
    return imagecodecs.avif_decode(data, index=0, numthreads=1)


def _decode_webp(data: bytes) -> np.ndarray:
    """The first frame of a WebP file."""
    return imagecodecs.webp_decode(data, index=0)


# Formats decoded whole into one array by their own library; the rest go through Pillow.
_ARRAY_DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    "AVIF": _decode_avif, "WEBP": _decode_webp,
}


def shrunk(pixels: np.ndarray, factor: float) -> np.ndarray:
    """``pixels`` ``factor`` (< 1) times as large, by dlib's bilinear resize: the one its detectors' pyramids
    use, 2-3x faster than Pillow's antialiased one."""
    height, width = pixels.shape[:2]
    return dlib.resize_image(np.ascontiguousarray(pixels), max(1, round(height * factor)),
                             max(1, round(width * factor)))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8, 1 upright); an unreadable one counts as upright, as `_make_upright` does."""
    with contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if isinstance(orientation, int) and 1 <= orientation <= 8:
            return orientation
    return 1


def _oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` turned upright as Pillow's ``exif_transpose`` turns them (a view: no copy yet)."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.transpose(1, 0, 2)  # 5: transpose; the others are a transpose and a flip
    if orientation in (2, 3, 6, 7):
        pixels = pixels[:, ::-1]
    if orientation in (3, 4, 7, 8):
        pixels = pixels[::-1]
    return pixels


# Modes that Pillow resamples channel by channel; palette, 1-bit and 16-bit images are converted first.
_RESAMPLABLE_MODES = frozenset({"RGB", "RGBA", "RGBX", "L", "LA", "CMYK", "YCbCr"})


def _make_upright(image: Image.Image) -> None:
    """Apply the EXIF orientation in place (no copy of the pixels); an unreadable one counts as none."""
    with contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        ImageOps.exif_transpose(image, in_place=True)


def _to_8_bits(values: np.ndarray, *, floating: bool) -> np.ndarray:
    """16-bit, 32-bit or float grey levels as 8 bits, scaled by the range the values actually use.

    The container says little: tools that widen an 8-bit photo to 16 bits often keep its
    values (0-255), sensors write 10 to 14 bits, and float images hold 0-1. So the top of
    the scale is the brightest value, but never below 255 (1.0 for floats), which leaves
    8-bit content as it is; the bottom is 0 unless values go below it.
    """
    low = min(0.0, float(values.min(initial=0)))
    high = max(1.0 if floating else 255.0, float(values.max(initial=0)))
    return np.clip((values - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB: transparency over white, 16-bit, 32-bit and float scaled to 8 bits by their range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_to_8_bits(np.asarray(image, dtype=np.float32), floating=image.mode == "F"), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return rgba.convert("RGB")  # opaque: no compositing needed
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=alpha)
        return background
    return image.convert("RGB")
