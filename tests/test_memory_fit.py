"""Two workers fit a 256 MB instance: the real service in a 256 MB memory cgroup under 12 MP load, phone photos
in every format up to 24 MP among them (HEIC, AVIF, WebP and PNG are decoded at full size), and class photos
that ask for the finest scan (clamped to FACEAPI_MAX_SCAN_PIXELS), by each detector
(the CNN's clamped to FACEAPI_CNN_MAX_SCAN_PIXELS)."""

from __future__ import annotations

import concurrent.futures
import pathlib

from tests.cgroup import memory_cgroup
from tests.photos import class_photo
from tests.photos import phone_format
from tests.photos import phone_photo
from tests.scenario import enroll
from tests.servers import GunicornServer
from tests.servers import upload


def test_two_workers_fit_256_mb_under_12_mp_load(tmp_path: pathlib.Path) -> None:
    photo = phone_photo()
    group_photo = class_photo(80)
    # Every format at the largest size a phone sends it (phones write PNG for screenshots, not photos).
    phone_mix = [("heic", 24), ("heic_sideways", 12), ("avif", 16), ("webp", 16), ("png", 4),
                 ("ultra_hdr_sideways", 12), ("ultra_hdr", 48)]
    phone_photos = [(kind, phone_format(kind, megapixels)) for kind, megapixels in phone_mix]
    env = {"WEB_CONCURRENCY": "2", "FACEAPI_STORE_PATH": str(tmp_path / "faces.pkl")}
    with memory_cgroup(256 * 2**20) as group:
        with GunicornServer(tmp_path / "gunicorn.log", env, launcher=group.launcher) as server:
            assert enroll(server.client(), "obama", "obama.jpg").status_code == 201
            workers = server.worker_pids()

            def ask(_: int) -> list[str | None]:
                response = server.client().post("/recognize", data={"image": upload(photo, "phone.jpg")})
                assert response.status_code == 200, response.json
                return [face["name"] for face in response.json["faces"]]

            def ask_finest(index: int) -> dict[str, object]:
                form = {"image": upload(group_photo, "class.jpg"), "min_face_px": "1",
                        "detector": ("yunet", "hog", "cnn")[index % 3]}
                response = server.client().post("/recognize", data=form)
                assert response.status_code == 200, response.json
                return response.json["detection"]

            def ask_phone(index: int) -> int:
                kind, photo = phone_photos[index % len(phone_photos)]
                response = server.client().post("/recognize", data={"image": upload(photo, f"photo.{kind}")})
                assert response.status_code == 200, response.json
                return len(response.json["faces"])

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                finest = [pool.submit(ask_finest, i) for i in range(9)]
                phones = [pool.submit(ask_phone, i) for i in range(2 * len(phone_photos))]
                answers = list(pool.map(ask, range(48)))
            assert answers == [["obama"]] * 48
            assert [future.result() for future in phones] == [2] * len(phones)
            assert all(future.result()["limited"] for future in finest)
            assert {future.result()["detector"] for future in finest} == {"yunet", "hog", "cnn"}
            assert server.worker_pids() == workers  # none killed and replaced
            assert group.oom_kills() == 0
            print(f"peak memory of the cgroup: {group.peak_mb():.0f} MB")
