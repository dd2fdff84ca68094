"""Slow clients cannot take the service down: requests are received whole before a thread serves them."""

from __future__ import annotations

import http.client
import json
import socket
import time

from tests.conftest import face_photo
from tests.conftest import test_images
from tests.scenario import enroll
from tests.servers import encode_form
from tests.servers import upload
from tests.slow_clients import attack


def test_trickling_clients_neither_stall_the_service_nor_store_anything(gunicorn_factory) -> None:
    """64 connections trickle /enroll bodies at a byte every 2 s (2 workers x 4 threads, as deployed)."""
    server = gunicorn_factory(WEB_CONCURRENCY="2", FACEAPI_THREADS="4", FACEAPI_REQUEST_TIMEOUT_S="6")
    assert enroll(server.client(), "obama", "obama.jpg").status_code == 201
    photo = face_photo("examples/obama-480p.jpg").read_bytes()
    with attack(server.port, photo, connections=64, path="/enroll") as (trickle, prober):
        time.sleep(9)  # through the timeout, so probes run before and after the cut
    assert not prober.failures, prober.failures
    # Stalled, a probe would wait for the 6 s timeout to cut the trickles; how fast it answers is bench/'s.
    assert len(prober.health) >= 3 and max(prober.health) < 5.0, prober.health
    assert len(prober.recognize) >= 3 and max(prober.recognize) < 5.0, prober.recognize
    assert trickle.closed_by_server == 64 and len(trickle.answers) == 64
    for answer in trickle.answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(body)["error"]["code"] == "request_timeout"
    assert server.client().get("/people").json["people"] == [{"name": "obama", "face_count": 1}]
    assert "(not received) 408" in server.log()


def _raw_exchange(port: int, request: bytes, *, pause_after: int | None = None) -> bytes:
    """Send ``request`` (pausing 0.3 s after ``pause_after`` bytes) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if pause_after is None:
            sock.sendall(request)
        else:
            sock.sendall(request[:pause_after])
            time.sleep(0.3)
            sock.sendall(request[pause_after:])
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _read_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of the next response head, however TCP splits them."""
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"the connection closed after {received!r}"
        received += byte
    return received


def test_requests_in_pieces_chunked_pipelined_and_with_expect(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="1")
    client = server.client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    body, content_type = encode_form({"image": upload(test_images("obama2.jpg"))})
    head = f"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n".encode()

    # Sent in two pieces, the break inside the header block.
    sized = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    answer = _raw_exchange(server.port, sized, pause_after=20)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"obama"' in answer, answer[:300]

    # Expect: 100-continue gets its interim answer while the body is still to come.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert _read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = _read_head(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"100 Continue") == 0, answer[:300]

    # Chunked, with a break inside a chunk, then a second request pipelined behind it on the same connection.
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000]) for i in range(0, len(body), 5000))
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    health = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _raw_exchange(server.port, chunked + health, pause_after=len(head) + 7000)
    assert answer.count(b"HTTP/1.1 200 ") == 2 and b'"obama"' in answer and b'"ok"' in answer, answer[:300]


def test_keep_alive_connection_serves_requests_one_after_another(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="1")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(3):
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
            body, content_type = encode_form({"image": upload(test_images("obama.jpg"))})
            connection.request("POST", "/recognize", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            assert response.status == 200 and len(json.loads(response.read())["faces"]) == 1
    finally:
        connection.close()


def test_the_next_request_on_a_kept_alive_connection_is_received_whole_too(gunicorn_factory) -> None:
    """A fast first request, then a trickled second one on the same connection: 408, and no thread held."""
    server = gunicorn_factory(WEB_CONCURRENCY="1", FACEAPI_THREADS="1", FACEAPI_REQUEST_TIMEOUT_S="2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:  # head and body may come in two segments
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.5)
        assert server.client().get("/health").status_code == 200  # the only thread is free
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_declared_body_over_the_limit_is_refused_at_once(gunicorn_factory) -> None:
    server = gunicorn_factory(FACEAPI_UPLOAD_LIMIT_BYTES="1000000")
    request = b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\nContent-Type: image/jpeg\r\n\r\n"
    head, _, body = _raw_exchange(server.port, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and json.loads(body)["error"]["code"] == "upload_too_large"
