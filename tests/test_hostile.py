"""Hostile and broken input: the documented answer every time, and the service keeps serving."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from faceapi.scopes import ApiKey
from tests.hostile import CORPUS
from tests.hostile import OBAMA
from tests.servers import upload

DOCUMENTED = {200, 201, 400, 413, 415, 422}


@pytest.mark.parametrize(("path", "form", "status", "code"), [row[1:] for row in CORPUS], ids=[row[0] for row in CORPUS])
def test_corpus_answers_as_documented(client, path: str, form, status: int, code: str | None) -> None:
    response = client.post(path, data=form())
    assert response.status_code == status, response.json
    if code is not None:
        assert response.json["error"]["code"] == code and response.json["error"]["message"]
    if path == "/recognize" and status == 200:
        assert len(response.json["faces"]) == 1  # the first frame / page, upright, still shows the face
    assert client.get("/health").status_code == 200


def test_awkward_names_round_trip(client) -> None:
    names = ["../../etc/passwd", "Robert'); DROP TABLE people;--", "<script>alert(1)</script>", "Zoë 李"]
    for name in names:
        assert client.post("/enroll", data={"name": name, "image": upload(OBAMA)}).status_code == 201
    listed = [person["name"] for person in client.get("/people").json["people"]]
    assert sorted(listed) == sorted(names)
    for name in names:
        response = client.delete("/people/" + quote(name, safe=""))
        assert response.status_code == 200 and response.json["name"] == name
    assert client.get("/people").json == {"people": [], "next": None}


def test_corpus_against_gunicorn_loses_no_worker(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="2", FACEAPI_THREADS="4")
    client = server.client()
    workers = server.worker_pids()
    answered = 0
    for _name, path, form, status, code in CORPUS:
        response = client.post(path, data=form())
        answered += response.status_code == status and (code is None or response.json["error"]["code"] == code)
        assert client.get("/health").status_code == 200
    assert answered == len(CORPUS)
    assert server.worker_pids() == workers


def test_json_error_for_oversized_chunked_upload(gunicorn_factory) -> None:
    """A body without Content-Length is cut off while it streams, not buffered whole first."""
    server = gunicorn_factory(FACEAPI_UPLOAD_LIMIT_BYTES="1000000")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(40):
            yield b"\xff" * 100_000  # 4 MB in all, in chunks

    try:
        try:
            connection.request("POST", "/recognize", body=body(), headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"},
                encode_chunked=True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the 4 MB were sent: cut while streaming
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "upload_too_large"
    finally:
        connection.close()
    assert server.client().get("/health").status_code == 200


ERROR_FIELDS = {"code", "message", "request_id", "field", "index"}


@pytest.mark.store_independent
@given(data=st.binary(min_size=0, max_size=4096), cut=st.integers(min_value=0, max_value=60_000))
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_upload_to_decision(client, data: bytes, cut: int) -> None:
    """Random bytes, and obama.jpg cut short and spliced with them: a documented answer, never a 500."""
    jpeg = OBAMA.read_bytes()
    for payload in (data, jpeg[:cut] + data):
        response = client.post("/recognize", data={"image": upload(payload, "fuzz.jpg")})
        assert response.status_code in DOCUMENTED, response.json
        if response.status_code >= 400:
            assert {"code", "message", "request_id"} <= set(response.json["error"]) <= ERROR_FIELDS


@pytest.mark.store_independent
def test_request_id_and_log_line(client, caplog) -> None:
    caplog.set_level("INFO", logger="faceapi.access")
    response = client.post("/recognize", data={"image": upload(b"nope", "x.jpg")}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.json["error"]["request_id"] == "abc-123"
    [line] = [record.getMessage() for record in caplog.records if record.name == "faceapi.access"]
    assert line.startswith("abc-123 POST /recognize 415 ")
    generated = client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32
    for unsafe in ("x" * 100, "a b;<script>"):
        replaced = client.get("/health", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert len(replaced) == 32 and replaced != unsafe  # replaced, never echoed


@pytest.mark.store_independent
def test_logs_hold_no_secrets_or_bytes(make_client, caplog) -> None:
    caplog.set_level("DEBUG")
    client = make_client(api_keys=(ApiKey(bytes(32)),))
    client.post("/recognize", data={"image": upload(OBAMA)}, headers={"X-API-Key": "topsecretkey"})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "topsecretkey" not in text and "JFIF" not in text
