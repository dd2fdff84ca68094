"""A small corpus of hostile and unusual uploads, built in memory, each with the answer it must get.

Each item: (id, form fields, expected status, expected error code or None for success).
Used through Flask's test client (exact answers) and against real gunicorn (workers survive).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from tests.servers import FACES
from tests.servers import upload

OBAMA = FACES / "tests/test_images/obama.jpg"


def _obama(mode: str = "RGB") -> Image.Image:
    return Image.open(OBAMA).convert(mode)


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring width x height pixels, with a tiny body: rejected before decoding."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _corrupt_exif_jpeg() -> bytes:
    """obama.jpg with an APP1 Exif segment full of garbage."""
    data = OBAMA.read_bytes()
    garbage = b"Exif\0\0" + b"II*\0" + b"\xff\xee" * 200
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + segment + data[2:]


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return _save(_obama(), "JPEG", quality=90, exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    frames = [_obama().resize((455, 568)), Image.new("RGB", (455, 568), "black")]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    return _save(_obama(), "TIFF", save_all=True, append_images=[Image.new("RGB", (64, 64), "white")])


def _sixteen_bit_png() -> bytes:
    gray = np.asarray(_obama("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(gray), "PNG")


def _palette_with_transparency() -> bytes:
    image = _obama().quantize(256)
    return _save(image, "PNG", transparency=0)


def _heic_like() -> bytes:
    return b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64


Form = Callable[[], dict[str, Any]]


def _image(data: Callable[[], bytes], name: str = "upload.jpg") -> Form:
    return lambda: {"image": upload(data(), name)}


def _enroll(name: str) -> Form:
    return lambda: {"name": name, "image": upload(OBAMA)}


OK = None
# (id, path, form, status, code): code None means success, checked by status alone.
CORPUS: list[tuple[str, str, Form, int, str | None]] = [
    ("zero bytes", "/recognize", _image(lambda: b""), 400, "empty_image"),
    ("random bytes", "/recognize", _image(lambda: np.random.default_rng(1).bytes(4096)), 415, "unsupported_image"),
    ("html named jpg", "/recognize", _image(lambda: b"<!doctype html><html><body>hi</body></html>"), 415, "unsupported_image"),
    ("pdf named jpg", "/recognize", _image(lambda: b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"), 415, "unsupported_image"),
    ("truncated jpeg", "/recognize", _image(lambda: OBAMA.read_bytes()[:20_000]), 415, "unsupported_image"),
    ("corrupt exif", "/recognize", _image(_corrupt_exif_jpeg), 200, OK),
    ("exif orientation 0", "/recognize", _image(lambda: _exif_orientation(0)), 200, OK),
    ("exif orientation 9", "/recognize", _image(lambda: _exif_orientation(9)), 200, OK),
    ("exif orientation 65535", "/recognize", _image(lambda: _exif_orientation(65535)), 200, OK),
    ("png bomb 50000x50000", "/recognize", _image(_png_bomb, "bomb.png"), 413, "image_too_large"),
    ("png over pixel limit", "/recognize", _image(lambda: _png_bomb(8000, 8000), "big.png"), 413, "image_too_large"),
    ("30 MP png, over the full-decode limit", "/recognize", _image(lambda: _png_bomb(6000, 5000), "big.png"), 413, "image_too_large"),
    ("animated gif", "/recognize", _image(lambda: _animated("GIF"), "a.gif"), 200, OK),
    ("animated webp", "/recognize", _image(lambda: _animated("WEBP"), "a.webp"), 200, OK),
    ("multi-page tiff", "/recognize", _image(_multipage_tiff, "a.tiff"), 200, OK),
    ("16-bit png", "/recognize", _image(_sixteen_bit_png, "a.png"), 200, OK),
    ("palette png with transparency", "/recognize", _image(_palette_with_transparency, "a.png"), 200, OK),
    ("cmyk jpeg", "/recognize", _image(lambda: _save(_obama("CMYK"), "JPEG", quality=90)), 200, OK),
    ("progressive jpeg", "/recognize", _image(lambda: _save(_obama(), "JPEG", progressive=True, quality=85)), 200, OK),
    ("webp", "/recognize", _image(lambda: _save(_obama(), "WEBP", quality=85), "a.webp"), 200, OK),
    ("heic", "/recognize", _image(_heic_like, "a.heic"), 415, "unsupported_image"),
    ("wrong field", "/recognize", lambda: {"file": upload(OBAMA)}, 400, "missing_image"),
    ("twenty files", "/enroll", lambda: {"name": "x", "image": [upload(OBAMA) for _ in range(20)]}, 400, "too_many_images"),
    ("empty name", "/enroll", _enroll(""), 400, "invalid_name"),
    ("10000-char name", "/enroll", _enroll("n" * 10_000), 400, "invalid_name"),
    ("control chars in name", "/enroll", _enroll("a\x1b[31mb"), 400, "invalid_name"),
    ("dot-dot name", "/enroll", _enroll("../../etc/passwd"), 201, OK),
    ("sql name", "/enroll", _enroll("Robert'); DROP TABLE people;--"), 201, OK),
    ("html name", "/enroll", _enroll("<script>alert(1)</script>"), 201, OK),
    ("tolerance negative", "/recognize", lambda: {"image": upload(OBAMA), "tolerance": "-1"}, 400, "invalid_tolerance"),
    ("tolerance above 1", "/recognize", lambda: {"image": upload(OBAMA), "tolerance": "1.01"}, 400, "invalid_tolerance"),
    ("tolerance NaN", "/recognize", lambda: {"image": upload(OBAMA), "tolerance": "NaN"}, 400, "invalid_tolerance"),
    ("tolerance text", "/recognize", lambda: {"image": upload(OBAMA), "tolerance": "strict"}, 400, "invalid_tolerance"),
    ("tolerance infinity", "/recognize", lambda: {"image": upload(OBAMA), "tolerance": "inf"}, 400, "invalid_tolerance"),
]
