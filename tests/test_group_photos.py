"""Group photos: the caller's min_face_px, the scan pixel cap, and recall on 12 MP class photos."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.imaging import decode_image
from faceapi.pipeline import Pipeline
from faceapi.pipeline import detect_options
from faceapi.scanning import ScanPlan
from tests.conftest import TestClient
from tests.photos import class_photo
from tests.scenario import enroll
from tests.servers import upload

FULL_SCAN = 12_000_000  # a 4000x3000 photo scanned at full size


def test_default_plan_searches_small_photos_at_their_own_size() -> None:
    options = detect_options(Settings(workers=1))
    # Up to 2 MP YuNet scans the photo at its own size: faces from 20 px.
    assert options.plan(640, 480) == ScanPlan(scale=1.0, min_face_px=20, limited=False)
    assert options.plan(1024, 683) == ScanPlan(scale=1.0, min_face_px=20, limited=False)
    assert options.plan(1600, 1200) == ScanPlan(scale=1.0, min_face_px=20, limited=False)
    # Larger photos keep their cost: scanned at 896 px, faces from 20 * 1920 / 896 = 43 px on 1080p,
    # and from 20 * 4000 / 896 = 90 px on a 12 MP photo.
    assert options.plan(1920, 1080) == ScanPlan(scale=896 / 1920, min_face_px=43, limited=False)
    assert options.plan(4000, 3000) == ScanPlan(scale=0.224, min_face_px=90, limited=False)
    assert detect_options(Settings(workers=1, detect_side_px=2000)).plan(4000, 3000).min_face_px == 40
    assert detect_options(Settings(workers=1, detect_side_px=0)).plan(4000, 3000).min_face_px == 20
    assert detect_options(Settings(workers=1, full_search_pixels=0)).plan(1024, 683).min_face_px == 23  # at 896 px


def test_hog_and_the_cnn_search_small_photos_as_face_recognition_does() -> None:
    """Up to 2 MP a photo is doubled once for HOG: faces from 36 px, face_recognition's own scan."""
    options = detect_options(Settings(workers=1))
    assert options.plan(640, 480, detector="hog") == ScanPlan(scale=2.0, min_face_px=36, limited=False,
                                                              detector="hog")
    assert options.plan(1920, 1080, detector="hog") == ScanPlan(scale=2 / 3, min_face_px=108, limited=False,
                                                                detector="hog")
    assert options.plan(4000, 3000, detector="hog").min_face_px == 225
    assert options.plan(1024, 683, detector="cnn").min_face_px == 48  # 2.9 MP doubled: over the CNN's cap
    # FACEAPI_MIN_FACE_PX, when set, is every detector's default.
    assert detect_options(Settings(workers=1, min_face_px=40)).plan(640, 480, detector="hog").min_face_px == 40
    assert detect_options(Settings(workers=1, min_face_px=40)).plan(640, 480).min_face_px == 40


def test_asked_plan_and_the_cap() -> None:
    # The default cap lets a 12 MP photo be searched from 20 px with YuNet, from 80 px with HOG; the CNN's,
    # a 1024x683 photo from 48 px (from 40 px at 3 MP).
    options = detect_options(Settings(workers=1))
    assert options.plan(4000, 3000, 80) == ScanPlan(scale=0.25, min_face_px=80, limited=False)
    assert options.plan(4000, 3000, 20) == ScanPlan(scale=1.0, min_face_px=20, limited=False)
    assert options.plan(4000, 3000, 10).limited
    assert options.plan(4000, 3000, 80, "hog") == ScanPlan(scale=0.9, min_face_px=80, limited=False, detector="hog")
    assert options.plan(4000, 3000, 40, "hog").limited
    assert options.plan(1024, 683, 40, "cnn").min_face_px == 48 and options.plan(1024, 683, 40, "cnn").limited
    wider = detect_options(Settings(workers=1, cnn_max_scan_pixels=3_000_000))
    assert wider.plan(1024, 683, 40, "cnn") == ScanPlan(scale=2.0, min_face_px=40, limited=False, detector="cnn")
    options = detect_options(Settings(workers=1, max_scan_pixels=3_000_000))
    assert options.plan(4000, 3000, 160, "hog") == ScanPlan(scale=0.45, min_face_px=160, limited=False,
                                                           detector="hog")
    # 80 px faces need 9.7 MP scanned by HOG; this cap allows 3 MP, so faces from 144 px are searched.
    assert options.plan(4000, 3000, 80, "hog") == ScanPlan(scale=0.5, min_face_px=144, limited=True, detector="hog")
    assert options.plan(4000, 3000, 20) == ScanPlan(scale=0.5, min_face_px=40, limited=True)


@pytest.mark.parametrize("face_px", [80, 120, 160, 240])
def test_class_photo_recall_at_the_asked_size(engine: FaceEngine, face_px: int) -> None:
    """40 faces of ``face_px`` on a 4000x3000 photo: all found when asked for, with the default settings
    (at 80 px a 9.7 MP scan, in bands), at most 2 extra boxes."""
    pipeline = Pipeline(engine, Settings(workers=1))
    analysis = pipeline.find_faces(class_photo(face_px), face_px, encode=False)
    assert not analysis.plan.limited
    faces = analysis.faces
    assert 40 <= len(faces) <= 42
    heights = sorted(face.box.bottom - face.box.top for face in faces)
    assert 0.75 * face_px <= heights[0] and heights[-1] <= 1.5 * face_px, heights


@pytest.mark.store_independent
@pytest.mark.parametrize("face_px", [120, 240])
def test_default_finds_every_face_of_a_12_mp_class_photo(client: TestClient, face_px: int) -> None:
    response = client.post("/recognize", data={"image": upload(class_photo(face_px), "class.jpg")})
    assert response.status_code == 200
    assert response.json["detection"] == {"min_face_px": 90, "limited": False, "detector": "yunet"}
    assert 40 <= len(response.json["faces"]) <= 42


@pytest.mark.store_independent
def test_asked_size_finds_the_small_faces(client: TestClient) -> None:
    """With HOG, 160 px faces are lost by default (the answer says faces from 225 px were searched), found when
    asked."""
    photo = class_photo(160)
    default = client.post("/recognize", data={"image": upload(photo, "class.jpg"), "detector": "hog"})
    assert default.json["detection"] == {"min_face_px": 225, "limited": False, "detector": "hog"}
    assert len(default.json["faces"]) < 40
    asked = client.post("/recognize", data={"image": upload(photo, "class.jpg"), "min_face_px": "160",
                                            "detector": "hog"})
    assert asked.status_code == 200
    assert asked.json["detection"] == {"min_face_px": 160, "limited": False, "detector": "hog"}
    assert 40 <= len(asked.json["faces"]) <= 42
    # Boxes are in the upload's coordinates.
    assert all(face["box"]["bottom"] <= 3000 and face["box"]["right"] <= 4000 for face in asked.json["faces"])


@pytest.mark.store_independent
@pytest.mark.parametrize(("detector", "searched"), [("yunet", 40), ("hog", 144)])
def test_cap_clamps_a_huge_scan(make_client, detector: str, searched: int) -> None:
    """A 48 MP upload asking for 10 px faces is scanned at the 12 MP cap, and says so."""
    canvas = Image.open(io.BytesIO(class_photo(240))).resize((8000, 6000), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=60)
    response = make_client(upload_limit_bytes=30 * 2**20).post(
        "/recognize", data={"image": upload(buffer.getvalue(), "huge.jpg"), "min_face_px": "10",
                            "detector": detector})
    assert response.status_code == 200, response.json
    # sqrt(12 MP / 48 MP) = 0.5 scanned pixels per pixel: faces from 20 / 0.5 = 40 px with YuNet, 72 / 0.5 = 144 px
    # with HOG (these are 480 px).
    assert response.json["detection"] == {"min_face_px": searched, "limited": True, "detector": detector}
    assert len(response.json["faces"]) == 40


@pytest.mark.store_independent
def test_enroll_says_how_it_searched(client: TestClient) -> None:
    response = enroll(client, "obama", "obama.jpg")
    assert response.status_code == 201
    # obama.jpg is 910x1137, about 1 MP: by default searched from 20 px, at its own size.
    assert response.json["faces"][0]["detection"] == {"min_face_px": 20, "limited": False, "detector": "yunet"}


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "abc", "100001"])
def test_bad_min_face_px(client: TestClient, value: str) -> None:
    response = client.post("/recognize", data={"image": upload(class_photo(240), "class.jpg"), "min_face_px": value})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_min_face_px"


def test_many_faces_encode_on_two_threads_to_the_same_numbers(engine: FaceEngine) -> None:
    """40 faces are encoded in two halves on two threads; the numbers are those of one call."""
    image = decode_image(class_photo(240), max_side_px=4000, max_pixels=FULL_SCAN)
    boxes = engine.face_locations(image.pixels, detect_options(Settings(workers=1)).plan(4000, 3000).scale)
    assert len(boxes) == 40
    together = engine.face_encodings(image.pixels, boxes)
    one_call = engine._encoder.encode(engine.face_chips(image.pixels, boxes))
    assert together.shape == (40, 128)
    assert (together == one_call).all()
