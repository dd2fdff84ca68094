"""The demo page at / in headless Chromium (Debian's, installed by scripts/ensure-chromium) against real
gunicorn with an API key: enroll, recognize with boxes and names drawn, list and delete people.

FACEAPI_DEMO_SCREENSHOT=docs/demo-page.png saves the screenshot that README shows."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import face_photo

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: pathlib.Path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: run the tests with ./scripts/test, which installs it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root, with this machine's closed network: no sandbox, and none of Chromium's own connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


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

    assert "(hog)" in browser.find_element(By.ID, "recognize-result").text  # the service's default
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
