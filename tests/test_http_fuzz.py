"""Malformed HTTP at the socket, against real gunicorn: no request ends a worker, every answer is ours."""

from __future__ import annotations

import json
import re
import socket
import time

from hypothesis import given
from hypothesis import settings as hypothesis_settings

from tests.conftest import test_images
from tests.http_corpus import MALFORMED
from tests.http_corpus import VALID
from tests.http_corpus import mutations
from tests.scenario import enroll
from tests.servers import encode_form
from tests.servers import upload
from tests.slow_clients import Prober

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")
ORIGIN = "http://page.example"
MUTATIONS = 1000


def exchange(port: int, data: bytes, *, half_close: bool = True, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection and read everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the server closed with our bytes unread: the answer, if any, came first
        return received


def responses(answer: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a connection's bytes into (status, headers, body) by Content-Length (1xx answers have neither)."""
    found = []
    while match := _STATUS_LINE.match(answer):
        after = answer[match.end():]
        head, _, rest = (b"", b"", after[2:]) if after.startswith(b"\r\n") else after.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if line)
        length = int(headers.get("Content-Length", "0"))
        found.append((int(match.group(1)), headers, rest[:length]))
        answer = rest[length:]
    assert not answer, answer[:200]
    return found


def check_answer(answer: bytes) -> list[int]:
    """Every response is well framed; errors are our JSON, and none is a server error."""
    statuses = []
    for status, headers, body in responses(answer):
        statuses.append(status)
        assert status < 500 or status == 501, (status, body)  # 501: an unknown transfer coding (RFC 9112 6.1)
        if status >= 400:
            assert headers["Content-Type"] == "application/json" and "X-Request-ID" in headers, headers
            assert "code" in json.loads(body)["error"]
    return statuses


def test_malformed_requests_and_mutations_end_no_worker(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="2")
    workers = server.worker_pids()
    boots = server.log().count("Booting worker")
    seen: list[list[int]] = []

    @hypothesis_settings(max_examples=MUTATIONS, deadline=None, derandomize=True, database=None)
    @given(data=mutations())
    def send_mutation(data: bytes) -> None:
        seen.append(check_answer(exchange(server.port, data)))

    with Prober(server.port, None, timeout_s=5, interval_s=0.02) as prober:
        for data in MALFORMED:
            statuses = check_answer(exchange(server.port, data))
            assert statuses and statuses[-1] >= 400, (data, statuses)  # refused, and said so
            seen.append(statuses)
        for data in VALID:
            seen.append(check_answer(exchange(server.port, data)))
        send_mutation()
    assert len(seen) == len(MALFORMED) + len(VALID) + MUTATIONS
    assert server.worker_pids() == workers and server.log().count("Booting worker") == boots
    assert not prober.failures and len(prober.health) >= 10, prober.failures
    assert "Traceback" not in server.log()
    client = server.client()
    assert enroll(client, "obama", "obama.jpg").status_code == 201
    recognized = client.post("/recognize", data={"image": upload(test_images("obama2.jpg"))})
    assert recognized.status_code == 200 and recognized.json["faces"][0]["name"] == "obama"


def test_pipelined_requests_are_each_answered(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="1")
    body, content_type = encode_form({"image": upload(test_images("obama.jpg"))})
    detect = (f"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    last = detect.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    answer = exchange(server.port, health + detect + chunked + health + health + last, half_close=False)
    assert check_answer(answer) == [200, 200, 400, 200, 200, 200]  # 400: the chunked one sends no image
    # A malformed request behind valid ones: they are answered, then it is refused and the connection closed.
    answer = exchange(server.port, health + detect + b"GET /health HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n" + health)
    assert check_answer(answer) == [200, 200, 400]


def test_the_workers_own_answers_carry_the_apps_cors_headers(gunicorn_factory) -> None:
    server = gunicorn_factory(WEB_CONCURRENCY="1", FACEAPI_CORS_ORIGINS=ORIGIN, FACEAPI_UPLOAD_LIMIT_BYTES="100000",
                              FACEAPI_REQUEST_TIMEOUT_S="2")
    cors = {"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary"}
    origin = f"Origin: {ORIGIN}\r\n"
    apps = responses(exchange(server.port, f"GET /nowhere HTTP/1.1\r\nHost: x\r\n{origin}\r\n".encode()))[0]
    assert apps[0] == 404 and apps[1]["Access-Control-Allow-Origin"] == ORIGIN
    expected = {name: value for name, value in apps[1].items() if name in cors}
    too_large = f"POST /recognize HTTP/1.1\r\nHost: x\r\n{origin}Content-Length: 200000\r\n\r\n".encode()
    started = time.monotonic()
    slow = f"POST /recognize HTTP/1.1\r\nHost: x\r\n{origin}Content-Length: 10\r\n\r\nabc".encode()
    malformed = f"POST /recognize HTTP/1.1\r\nHost: x\r\n{origin}Content-Length: 1\r\nContent-Length: 2\r\n\r\n"
    for request, status in [(too_large, 413), (slow, 408), (malformed.encode(), 400)]:
        (answered, headers, body), = responses(exchange(server.port, request, half_close=False))
        assert answered == status and {name: value for name, value in headers.items() if name in cors} == expected
        assert headers["Connection"] == "close" and json.loads(body)["error"]["request_id"] == headers["X-Request-ID"]
    assert time.monotonic() - started >= 2  # the 408 came from the timeout
    # Another origin gets no CORS headers from the worker either, as from the app.
    other = "POST /recognize HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nContent-Length: 200000\r\n\r\n"
    (answered, headers, _), = responses(exchange(server.port, other.encode(), half_close=False))
    assert answered == 413 and "Access-Control-Allow-Origin" not in headers
