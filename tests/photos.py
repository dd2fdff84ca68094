"""Photos made for tests and benchmarks: group photos built from the labelled faces, and plain images.

A class photo is what an attendance user sends: a 12 MP phone picture with rows of
small faces. It is built from head crops of the labelled photos in ../shared/faces
(each face's box from ``measured_hog.json``), scaled so that every face box is a
given height, pasted in rows on a grey 4000x3000 canvas, and saved as a JPEG.
"""

from __future__ import annotations

import functools
import io
import json

from PIL import ExifTags
from PIL import Image

from faceapi.engine import Box
from tests.servers import FACES

# One photo per person where possible, so the class is made of different faces.
_SOURCES = [
    "examples/knn_examples/train/alex_lacamoire/img1.jpg",
    "examples/knn_examples/train/biden/biden2.jpg",
    "examples/knn_examples/train/kit_harington/john1.jpeg",
    "examples/knn_examples/train/kit_harington/john2.jpeg",
    "examples/knn_examples/train/obama/obama.jpg",
    "examples/knn_examples/train/rose_leslie/img1.jpg",
    "examples/knn_examples/train/rose_leslie/img2.jpg",
    "examples/lin-manuel-miranda.png",
    "examples/alex-lacamoire.png",
    "tests/test_images/biden.jpg",
    "tests/test_images/obama2.jpg",
]


@functools.cache
def _head_crops() -> tuple[tuple[Image.Image, int], ...]:
    """(crop, face-box height in the crop) for each source: the HOG box with room for the head around it."""
    measured = json.loads((FACES / "measured_hog.json").read_text())["images"]
    crops = []
    for relative in _SOURCES:
        [(top, right, bottom, left)] = measured[relative]["face_locations_hog_upsample1"]
        image = Image.open(FACES / relative).convert("RGB")
        height, width = bottom - top, right - left
        box = (max(0, left - int(0.4 * width)), max(0, top - int(0.5 * height)),
               min(image.width, right + int(0.4 * width)), min(image.height, bottom + int(0.4 * height)))
        crops.append((image.crop(box), height))
    return tuple(crops)


def class_photo(face_px: int, count: int = 40, size: tuple[int, int] = (4000, 3000), rows: int = 5) -> bytes:
    """A JPEG of ``count`` faces, each face box about ``face_px`` tall, in ``rows`` rows across ``size``."""
    canvas = Image.new("RGB", size, (128, 128, 128))
    per_row = -(-count // rows)
    cell_width, cell_height = size[0] // per_row, size[1] // rows
    crops = _head_crops()
    for index in range(count):
        crop, face_height = crops[index % len(crops)]
        scale = face_px / face_height
        head = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.LANCZOS)
        if head.width > cell_width or head.height > cell_height:
            raise ValueError(f"{face_px} px faces do not fit {count} to a {size[0]}x{size[1]} photo")
        row, column = divmod(index, per_row)
        x = column * cell_width + (cell_width - head.width) // 2
        y = row * cell_height + (cell_height - head.height) // 2
        canvas.paste(head, (x, y))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(width: int = 320, height: int = 240, gray: int = 128) -> bytes:
    """A PNG of one flat gray: an image with no face."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (gray, gray, gray)).save(buffer, "PNG")
    return buffer.getvalue()


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: 1 when they are the same, 0 when apart."""
    inter = Box(max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom), max(a.left, b.left)).area
    return inter / (a.area + b.area - inter)


def phone_photo(width: int = 4000, height: int = 3000) -> bytes:
    """obama.jpg enlarged onto a canvas of a phone photo's size (12 MP by default), as a JPEG."""
    face = Image.open(FACES / "tests/test_images/obama.jpg").convert("RGB")
    scale = height * 0.75 / face.height
    canvas = Image.new("RGB", (width, height), (120, 120, 120))
    canvas.paste(face.resize((int(face.width * scale), int(face.height * scale))), (width // 4, height // 8))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# A phone's sizes: 4 MP (a screenshot, an app's export), 12 MP (most main cameras' default), 16 MP, 24 MP
# (recent iPhones' default), 48 MP (their full sensor).
PHONE_SIZES = {4: (2304, 1728), 12: (4000, 3000), 16: (4608, 3456), 24: (6000, 4000), 48: (8000, 6000)}


@functools.cache
def _two_people(megapixels: int) -> Image.Image:
    """two_people.jpg (biden right, obama left) enlarged to a phone photo's size."""
    return Image.open(FACES / "examples/two_people.jpg").convert("RGB").resize(PHONE_SIZES[megapixels],
                                                                              Image.Resampling.BILINEAR)


@functools.cache
def phone_format(kind: str, megapixels: int = 12) -> bytes:
    """two_people.jpg at a phone's size, written as a phone writes it.

    ``kind``: ``ultra_hdr`` (a JPEG with a second, smaller picture in an MPF segment, as Android's Ultra HDR
    gain map and many cameras' large previews), ``ultra_hdr_sideways`` (the same, stored turned with EXIF
    orientation 6, as a phone held upright stores it), ``heic`` (a grid of 512 px tiles, as an iPhone writes
    it), ``heic_sideways`` (the same, turned), ``heic_one_picture`` (no tiles, as some converters write it),
    ``avif``, ``webp``, ``png`` or ``jpeg``.
    """
    import pillow_heif  # the test's own encoder; the service decodes with it too

    photo = _two_people(megapixels)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if kind.endswith("_sideways"):
        photo = photo.transpose(Image.Transpose.ROTATE_90)  # shown upright after orientation 6
        exif[ExifTags.Base.Orientation] = 6
    if kind in ("ultra_hdr", "ultra_hdr_sideways"):
        gain_map = photo.resize((photo.width // 4, photo.height // 4))
        photo.save(buffer, "MPO", save_all=True, append_images=[gain_map], quality=85, exif=exif)
    elif kind in ("heic", "heic_sideways", "heic_one_picture"):  # pillow-heif stores orientation 6 as a turn
        pillow_heif.from_pillow(photo).save(buffer, format="HEIF", quality=50, exif=exif.tobytes(),
                                            tile_size=0 if kind == "heic_one_picture" else 512)
    elif kind == "png":
        photo.save(buffer, "PNG", compress_level=1)
    else:
        photo.save(buffer, {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG"}[kind], quality=80,
                   **({"speed": 10} if kind == "avif" else {}))
    return buffer.getvalue()
