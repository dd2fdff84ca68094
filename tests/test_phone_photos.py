"""A phone's photos, sent as they come off the phone: every common format at a phone's size gives both faces
of two_people.jpg, upright, with their names; past what can be decoded safely, 413 says what to send."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import pytest
from PIL import Image
from PIL import ImageOps

from faceapi.imaging import decode_image
from tests.photos import PHONE_SIZES
from tests.photos import phone_format
from tests.scenario import enroll
from tests.servers import upload

pytestmark = pytest.mark.store_independent


@pytest.mark.parametrize(("kind", "megapixels"), [
    ("ultra_hdr", 12), ("ultra_hdr_sideways", 12), ("heic", 12), ("heic_sideways", 12), ("heic_one_picture", 12),
    ("avif", 12), ("webp", 12), ("png", 12), ("jpeg", 48), ("ultra_hdr", 48), ("heic", 48),
    ("heic_one_picture", 24), ("avif", 24), ("webp", 24), ("png", 24),
])
def test_a_phone_photo_gives_both_faces_by_name(make_client, kind: str, megapixels: int) -> None:
    # A fast-compressed 24 MP PNG is over the default upload limit, and 24 MP over the default full-decode limit.
    client = make_client(upload_limit_bytes=64 * 2**20, max_full_decode_pixels=25_000_000)
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    response = client.post("/recognize", data={"image": upload(phone_format(kind, megapixels), f"photo.{kind}")})
    assert response.status_code == 200, response.json
    assert (response.json["image"]["width"], response.json["image"]["height"]) == PHONE_SIZES[megapixels]
    faces = sorted(response.json["faces"], key=lambda face: face["box"]["left"])
    assert [face["name"] for face in faces] == ["obama", "biden"]  # obama on the left, upright


@pytest.mark.parametrize("kind", ["ultra_hdr", "ultra_hdr_sideways", "heic", "heic_sideways", "heic_one_picture",
                                  "avif", "webp", "png"])
def test_each_format_is_decoded_as_displayed(kind: str) -> None:
    """The pixels are the photo as a viewer shows it (Pillow, orientation applied), within codec noise."""
    data = phone_format(kind, 12)
    decoded = decode_image(data, max_side_px=1000, max_pixels=50_000_000, max_full_decode_pixels=25_000_000)
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert (decoded.width, decoded.height) == shown.size == (4000, 3000)
    expected = np.asarray(shown.resize(decoded.pixels.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.float64)
    assert np.abs(decoded.pixels - expected).mean() < 4


def test_an_ultra_hdr_jpeg_is_decoded_reduced_like_a_plain_jpeg() -> None:
    """The JPEG path's reduced decode, whatever else the file carries: 48 MP is taken up to the JPEG limit."""
    plain = decode_image(phone_format("jpeg", 48), max_side_px=1000, max_pixels=50_000_000,
                         max_full_decode_pixels=4_000_000)
    ultra_hdr = decode_image(phone_format("ultra_hdr", 48), max_side_px=1000, max_pixels=50_000_000,
                             max_full_decode_pixels=4_000_000)
    assert plain.pixels.shape == ultra_hdr.pixels.shape == (750, 1000, 3)


@pytest.mark.parametrize("kind", ["heic_one_picture", "avif", "webp", "png"])
def test_past_the_full_decode_limit_413_says_what_to_send(make_client, kind: str) -> None:
    client = make_client(max_full_decode_pixels=10_000_000, upload_limit_bytes=64 * 2**20)
    response = client.post("/recognize", data={"image": upload(phone_format(kind, 12), f"photo.{kind}")})
    assert response.status_code == 413, response.json
    assert response.json["error"]["code"] == "image_too_large"
    message = response.json["error"]["message"]
    assert "10000000 pixels" in message and "send it as a JPEG" in message


def test_an_iphone_s_24_mp_heic_is_taken_at_the_default_limits(client) -> None:
    """A phone's HEIC is tiles, decoded a row at a time (`faceapi.heif`): the full-decode limit is not its."""
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    for kind in ("heic", "heic_sideways"):
        response = client.post("/recognize", data={"image": upload(phone_format(kind, 24), "photo.heic")})
        assert response.status_code == 200, response.json
        assert (response.json["image"]["width"], response.json["image"]["height"]) == PHONE_SIZES[24]
        faces = sorted(response.json["faces"], key=lambda face: face["box"]["left"])
        assert [face["name"] for face in faces] == ["obama", "biden"]


def test_a_24_mp_heic_of_one_picture_at_the_default_limits_is_413_and_says_what_to_send(client) -> None:
    response = client.post("/recognize", data={"image": upload(phone_format("heic_one_picture", 24), "a.heic")})
    assert response.status_code == 413 and response.json["error"]["code"] == "image_too_large"
    assert "6000x4000" in response.json["error"]["message"] and "send it as a JPEG" in response.json["error"]["message"]


def test_a_heic_of_large_tiles_is_held_to_the_whole_decode_limit(client) -> None:
    """A row of large tiles would hold as much as the whole picture: such a file takes the whole decode's limit."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (6000, 4000), (90, 90, 90))).save(buffer, format="HEIF",
                                                                               quality=30, tile_size=3000)
    response = client.post("/recognize", data={"image": upload(buffer.getvalue(), "tiles.heic")})
    assert response.status_code == 413 and response.json["error"]["code"] == "image_too_large"
