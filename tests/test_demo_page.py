"""The demo page at / in headless Chromium (Debian's, installed by scripts/ensure-chromium) against real
gunicorn with API keys: enroll, recognize with boxes and names drawn, list and delete people; and the
check-in camera, on Chromium's fake camera, with a read-only key of one collection.

FACEAPI_DEMO_SCREENSHOT=docs/demo-page.png and FACEAPI_CAMERA_SCREENSHOT=docs/camera-page.png save the
screenshots that README shows."""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import face_photo
from tests.conftest import test_images
from tests.servers import upload

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _chromium(tmp_path: pathlib.Path, *flags: str) -> webdriver.Chrome:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: run the tests with ./scripts/test, which installs it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root, with this machine's closed network: no sandbox, and none of Chromium's own connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium'}", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path: pathlib.Path):
    driver = _chromium(tmp_path)
    yield driver
    driver.quit()


@pytest.fixture
def camera_browser(tmp_path: pathlib.Path):
    """Chromium whose camera films the labelled two_people.jpg (its fake capture device, fed from a Y4M file)
    and which grants the camera without asking."""
    video = tmp_path / "two_people.y4m"
    _write_y4m(face_photo("examples/two_people.jpg"), video)
    driver = _chromium(tmp_path, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                       f"--use-file-for-fake-video-capture={video}")
    yield driver
    driver.quit()


def _write_y4m(photo: pathlib.Path, destination: pathlib.Path, frames: int = 2) -> None:
    """The photo as a still YUV4MPEG2 video (4:2:0, even sides), the format Chromium's fake camera plays."""
    image = Image.open(photo).convert("RGB")
    width, height = image.width // 2 * 2, image.height // 2 * 2
    y, cb, cr = (np.asarray(plane) for plane in image.crop((0, 0, width, height)).convert("YCbCr").split())
    chroma = [np.asarray(Image.fromarray(plane).resize((width // 2, height // 2), Image.BILINEAR))
              for plane in (cb, cr)]
    frame = b"FRAME\n" + y.tobytes() + chroma[0].tobytes() + chroma[1].tobytes()
    destination.write_bytes(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)


def _wait_text(driver, element_id: str, text: str) -> str:
    WebDriverWait(driver, 30).until(expected_conditions.text_to_be_present_in_element((By.ID, element_id), text))
    return driver.find_element(By.ID, element_id).text


def _enroll(driver, name: str, *photos: str) -> str:
    """Fill the enroll form (the page empties it after each success) and return the page's next answer."""
    before = driver.find_element(By.ID, "enroll-result").text
    driver.find_element(By.ID, "enroll-name").send_keys(name)
    driver.find_element(By.ID, "enroll-image").send_keys("\n".join(str(face_photo(p)) for p in photos))
    driver.find_element(By.CSS_SELECTOR, "#enroll-form button").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "enroll-result").text not in ("", before))
    return driver.find_element(By.ID, "enroll-result").text


def test_demo_page_end_to_end(gunicorn_factory, browser, tmp_path: pathlib.Path) -> None:
    server = gunicorn_factory(API_KEYS="demo-key")
    browser.get(f"http://127.0.0.1:{server.port}/")
    assert browser.title == "faceapi demo"
    # Without the key the API refuses, and the page says so.
    WebDriverWait(browser, 30).until(lambda d: "unauthorized" in d.find_element(By.ID, "people-list").text)
    browser.find_element(By.ID, "api-key").send_keys("demo-key")
    browser.find_element(By.ID, "people-refresh").click()
    assert "Enrolled 1 face(s) for obama" in _enroll(browser, "obama", "tests/test_images/obama.jpg")
    assert "Enrolled 1 face(s) for biden" in _enroll(browser, "biden", "tests/test_images/biden.jpg")
    refused = _enroll(browser, "nobody", "examples/two_people.jpg")
    assert "multiple_faces" in refused

    browser.find_element(By.ID, "recognize-image").send_keys(str(face_photo("examples/two_people.jpg")))
    browser.find_element(By.CSS_SELECTOR, "#recognize-form button").click()
    assert "Found:" in _wait_text(browser, "recognize-result", "Found:")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#photo .face")
    assert sorted(box.text.split(" ")[0] for box in boxes) == ["biden", "obama"]
    # Each box lies over its face: obama on the left half of the photo, biden on the right.
    photo = browser.find_element(By.CSS_SELECTOR, "#photo img").rect
    centres = {box.text.split(" ")[0]: (box.rect["x"] + box.rect["width"] / 2 - photo["x"]) / photo["width"]
               for box in boxes}
    assert centres["obama"] < 0.5 < centres["biden"]
    assert all(box.rect["width"] > 20 for box in boxes)

    assert "(yunet)" in browser.find_element(By.ID, "recognize-result").text  # the service's default
    # The CNN, chosen in the header: the same two people, and the answer says which detector ran.
    Select(browser.find_element(By.ID, "detector")).select_by_value("cnn")
    browser.find_element(By.ID, "recognize-image").send_keys(str(face_photo("examples/two_people.jpg")))
    browser.find_element(By.CSS_SELECTOR, "#recognize-form button").click()
    assert "(cnn)" in _wait_text(browser, "recognize-result", "(cnn)")
    assert sorted(box.text.split(" ")[0] for box in browser.find_elements(By.CSS_SELECTOR, "#photo .face")) == [
        "biden", "obama"]
    Select(browser.find_element(By.ID, "detector")).select_by_value("")

    WebDriverWait(browser, 30).until(lambda d: "biden (1)" in d.find_element(By.ID, "people-list").text)
    assert "obama (1)" in browser.find_element(By.ID, "people-list").text
    screenshot = tmp_path / "demo-page.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("FACEAPI_DEMO_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["FACEAPI_DEMO_SCREENSHOT"])
    browser.find_element(By.CSS_SELECTOR, "#people-list button[data-name='biden']").click()
    WebDriverWait(browser, 30).until(lambda d: "biden" not in d.find_element(By.ID, "people-list").text)
    people = server.client().request("GET", "/people", headers={"X-API-Key": "demo-key"}).json["people"]
    assert people == [{"name": "obama", "face_count": 1}]


def test_check_in_camera(gunicorn_factory, camera_browser, tmp_path: pathlib.Path) -> None:
    """The camera mode with a read-only key of one collection: the names drawn over the video, who was seen
    listed, frame after frame; people of another collection are not known there, and nothing is named in the log."""
    server = gunicorn_factory(API_KEYS="admin-key, door-key read-only collections=class-3a")
    admin = {"X-API-Key": "admin-key"}
    for collection, name, photo in (("class-3a", "obama", "obama.jpg"), ("class-3a", "biden", "biden.jpg"),
                                    ("class-3b", "joe", "biden.jpg")):
        answer = server.client().request("POST", f"/collections/{collection}/enroll", headers=admin,
                                         data={"name": name, "image": upload(test_images(photo))})
        assert answer.status_code == 201, answer.body
    browser = camera_browser
    browser.get(f"http://127.0.0.1:{server.port}/?mode=camera&collection=class-3a")
    assert not browser.find_element(By.ID, "enroll-section").is_displayed()
    browser.find_element(By.ID, "api-key").send_keys("door-key")
    browser.find_element(By.ID, "camera-start").click()
    # The list and the boxes are redrawn at each frame: each is read in one script, not element by element
    # (an element found before a redraw is gone after it).
    seen = "return [...document.querySelectorAll('#seen-list li')].map((item) => item.dataset.name)"
    WebDriverWait(browser, 60).until(lambda d: set(d.execute_script(seen)) == {"obama", "biden"})
    video_x, video_width, boxes = browser.execute_script(
        "const video = document.getElementById('camera').getBoundingClientRect();"
        "return [video.x, video.width, [...document.querySelectorAll('#camera-view .face')].map((box) => {"
        "  const rect = box.getBoundingClientRect(); return [box.textContent, rect.x, rect.width]; })];")
    centres = {text.split(" ")[0]: (x + width / 2 - video_x) / video_width for text, x, width in boxes}
    assert centres["obama"] < 0.5 < centres["biden"], centres
    # Frame after frame, not one recognition.
    WebDriverWait(browser, 60).until(lambda d: _frames(d) >= 4)
    screenshot = tmp_path / "camera-page.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("FACEAPI_CAMERA_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["FACEAPI_CAMERA_SCREENSHOT"])
    browser.find_element(By.ID, "camera-stop").click()
    assert "Stopped after" in _wait_text(browser, "camera-status", "Stopped after")

    # The device's key reaches only recognition, only in its collection.
    door = {"X-API-Key": "door-key"}
    assert server.client().request("GET", "/collections/class-3a/people", headers=door).status_code == 403
    assert server.client().request("POST", "/collections/class-3b/recognize", headers=door,
                                   data={"image": upload(test_images("biden.jpg"))}).status_code == 403
    log = server.log()
    assert log.count("POST /collections/<collection>/recognize 200") >= 4
    assert not any(word in log for word in ("class-3a", "class-3b", "obama", "biden"))


def _frames(driver) -> int:
    status = driver.find_element(By.ID, "camera-status").text
    return int(status.split(" ")[0]) if status[:1].isdigit() else 0
