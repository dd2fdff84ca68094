"""/metrics under real gunicorn: every worker's counts summed, whichever worker answers the scrape."""

from __future__ import annotations

import re

from tests.scenario import enroll
from tests.scenario import recognize


def _value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a Prometheus text page (labels in any order); 0 when absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


def test_metrics_sum_every_worker(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="2", FACEAPI_THREADS="2")
    client = server.client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    assert enroll(client, "biden", "biden.jpg").status_code == 201
    for _ in range(6):
        assert recognize(client, "examples/two_people.jpg").status_code == 200
    assert client.get("/people/nobody").status_code == 404
    pages = [client.get("/metrics") for _ in range(6)]  # the scrape lands on both workers
    assert all(page.status_code == 200 for page in pages)
    assert pages[0].headers["Content-Type"].startswith("text/plain")
    for page in pages:
        text = page.body.decode()
        assert _value(text, "faceapi_requests_total", endpoint="/recognize", method="POST", status="200") == 6
        assert _value(text, "faceapi_requests_total", endpoint="/enroll", method="POST", status="201") == 2
        assert _value(text, "faceapi_requests_total", endpoint="/people/<name>", method="GET", status="404") == 1
        assert _value(text, "faceapi_request_duration_seconds_count", endpoint="/recognize", method="POST") == 6
        assert _value(text, "faceapi_faces_detected_total", endpoint="/recognize") == 12
        assert _value(text, "faceapi_faces_detected_total", endpoint="/enroll") == 2
        assert _value(text, "faceapi_people_enrolled") == 2 and _value(text, "faceapi_faces_enrolled") == 2
        # Each worker read the store at least once after the other one's enrollment.
        assert _value(text, "faceapi_store_reloads_total") >= 2
        assert "obama" not in text and "biden" not in text  # names are never labels
    assert len(server.worker_pids()) == 2


def test_metrics_need_the_key_when_keys_are_set(gunicorn_factory) -> None:
    server = gunicorn_factory(API_KEYS="letmein")
    client = server.client()
    assert client.get("/metrics").status_code == 401
    assert client.request("GET", "/metrics", headers={"X-API-Key": "letmein"}).status_code == 200
