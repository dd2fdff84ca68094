"""The intake decides where a request ends exactly as gunicorn's parser, which serves it afterwards, does."""

from __future__ import annotations

import dataclasses

import pytest
from gunicorn.config import Config
from gunicorn.http import errors as http_errors
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from faceapi.intake import MAX_HEAD_BYTES
from faceapi.intake import RequestIntake
from faceapi.intake import Verdict
from tests.http_corpus import MALFORMED
from tests.http_corpus import VALID
from tests.http_corpus import mutations

LIMIT = 1_000_000
# Refusals that are the intake's own limits, not HTTP's grammar: gunicorn has no body limit, and a longer head.
INTAKE_LIMITS = {"upload_too_large", "header_fields_too_large"}


@dataclasses.dataclass(frozen=True)
class Read:
    """What gunicorn's parser made of some bytes: "complete" (with the request), "refused" or "incomplete"."""

    outcome: str
    end: int = 0  # where the request ended
    method: str = ""
    uri: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    trailers: tuple[tuple[str, str], ...] = ()


def gunicorn_reads(data: bytes) -> Read:
    """Parse ``data`` with gunicorn's own Request and body readers, as a worker thread would."""
    source = IterUnreader([data])
    try:
        request = Request(Config(), source, ("127.0.0.1", 0))
        body = b"".join(iter(lambda: request.body.read(8192), b""))
    except (http_errors.NoMoreData, StopIteration):
        return Read("incomplete")
    except http_errors.ChunkMissingTerminator as error:
        return Read("incomplete" if len(error.term) < 2 else "refused")
    except http_errors.ParseException:
        return Read("refused")
    declared = next((int(value) for name, value in request.headers if name == "CONTENT-LENGTH"), len(body))
    if len(body) < declared:
        return Read("incomplete")  # gunicorn's LengthReader returns what the peer sent before it closed
    rest = source.take_buffered() + b"".join(source.iter or [])
    return Read("complete", len(data) - len(rest), request.method, request.uri, tuple(request.headers), body,
                tuple(request.trailers))


def intake_reads(data: bytes, cuts: list[int], limit: int = LIMIT) -> tuple[Verdict, int, RequestIntake]:
    """Feed ``data`` in pieces cut at ``cuts``; the final verdict and how many bytes it took."""
    intake = RequestIntake(limit)
    verdict, fed = Verdict.WAIT, 0
    for start, stop in zip([0, *cuts], [*cuts, len(data)], strict=True):
        if start >= stop:
            continue
        verdict = intake.feed(data[start:stop])
        fed = stop
        if verdict is not Verdict.WAIT:
            break
    return verdict, fed, intake


def assert_agree(data: bytes, cuts: list[int]) -> None:
    """The intake completes, refuses or waits exactly when gunicorn completes, refuses or runs out of bytes."""
    cuts = sorted(cut for cut in cuts if 0 < cut < len(data))
    expected = gunicorn_reads(data)
    verdict, fed, intake = intake_reads(data, cuts)
    try:
        if intake.refusal is not None and intake.refusal.code in INTAKE_LIMITS:
            return
        outcome = {Verdict.COMPLETE: "complete", Verdict.REFUSED: "refused", Verdict.WAIT: "incomplete"}[verdict]
        assert outcome == expected.outcome, (data, intake.refusal)
        if verdict is not Verdict.COMPLETE:
            return
        # The verdict came with the piece that holds the request's last byte.
        assert fed >= expected.end and not [cut for cut in cuts if expected.end <= cut < fed], (data, cuts)
        intake.spool.seek(0)
        served = gunicorn_reads(intake.spool.read())
        without_expect = tuple(field for field in expected.headers if field[0] != "EXPECT")
        assert (served.method, served.uri, served.body, served.trailers) == (
            expected.method, expected.uri, expected.body, expected.trailers)
        assert served.headers in (expected.headers, without_expect)
    finally:
        intake.close()


@pytest.mark.parametrize("data", VALID + MALFORMED)
def test_corpus_in_one_piece_and_byte_by_byte(data: bytes) -> None:
    assert_agree(data, [])
    if len(data) < 6000:
        assert_agree(data, list(range(1, len(data))))


def test_corpus_is_mostly_refused_and_valid_requests_complete() -> None:
    """A corpus that gunicorn reads as valid would test nothing."""
    assert all(gunicorn_reads(data).outcome == "complete" for data in VALID)
    others = [data for data in MALFORMED if gunicorn_reads(data).outcome != "refused"]
    # The rest are over the intake's limits, or follow a valid request on the connection (tests/test_http_fuzz.py).
    assert len(others) <= 4, others
    for data in others:
        verdict, _, intake = intake_reads(data, [])
        intake.close()
        assert verdict is Verdict.REFUSED or gunicorn_reads(data).end < len(data), data


@hypothesis_settings(max_examples=1500, deadline=None, derandomize=True)
@given(data=mutations(), cuts=st.lists(st.integers(1, 400), max_size=4))
def test_mutated_requests(data: bytes, cuts: list[int]) -> None:
    assert_agree(data, cuts)


@pytest.mark.parametrize(("pieces", "verdicts"), [
    ([b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\n"], [Verdict.WAIT, Verdict.COMPLETE]),
    ([b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", b"cde"], [Verdict.WAIT, Verdict.COMPLETE]),
    ([b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"], [Verdict.COMPLETE]),
    ([b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"], [Verdict.REFUSED]),
    ([b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"], [Verdict.REFUSED]),
    ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", b"c\r\n0\r", b"\n\r\n"],
     [Verdict.WAIT, Verdict.WAIT, Verdict.COMPLETE]),
    ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0;ext=1\r\nTrailer-Field: v\r\n", b"\r\n"],
     [Verdict.WAIT, Verdict.COMPLETE]),
    ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], [Verdict.REFUSED]),
    ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"200\r\n" + b"a" * 512 + b"\r\n", b"3e8\r\n"],
     [Verdict.WAIT, Verdict.WAIT, Verdict.REFUSED]),
    ([b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES], [Verdict.REFUSED]),
], ids=["no body", "sized body", "empty body", "declared too large", "bad length", "chunked", "trailer",
        "bad chunk", "chunked too large", "endless header"])
def test_intake_verdicts(pieces: list[bytes], verdicts: list[Verdict]) -> None:
    intake = RequestIntake(1000)
    try:
        assert [intake.feed(piece) for piece in pieces] == verdicts
    finally:
        intake.close()


def test_refusals_say_why_without_quoting_the_request() -> None:
    cases = {
        b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n": (400, "malformed_request"),
        b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n": (413, "upload_too_large"),
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n": (414, "uri_too_long"),
        b"GET / HTTP/1.1\r\nExpect: teapot\r\n\r\n": (417, "expectation_failed"),
        b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n": (431, "header_fields_too_large"),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: zstd\r\n\r\n": (501, "unsupported_transfer_coding"),
    }
    for data, (status, code) in cases.items():
        intake = RequestIntake(1000)
        assert intake.feed(data) is Verdict.REFUSED
        assert intake.refusal is not None and (intake.refusal.status, intake.refusal.code) == (status, code)
        assert "\xb2" not in intake.refusal.message and "aaaa" not in intake.refusal.message
        intake.close()


def test_many_small_chunks_are_not_too_large() -> None:
    """Chunk framing does not count against the body limit (it did, over 4096 bytes of size lines)."""
    body = b"".join(b"1;pad=" + b"p" * 40 + b"\r\nx\r\n" for _ in range(500)) + b"0\r\n\r\n"
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    verdict, _, intake = intake_reads(data, [], limit=1000)
    intake.close()
    assert verdict is Verdict.COMPLETE and len(body) > 20 * 1000


def test_a_flood_of_chunk_framing_is_refused() -> None:
    """Framing has a bound of its own (the body limit, at least 1 MiB), so a body of empty extensions is not endless."""
    line = b"1;" + b"e" * 8000 + b"\r\nx\r\n"
    intake = RequestIntake(1000)
    verdicts = {intake.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")}
    verdicts |= {intake.feed(line) for _ in range(140)}
    intake.close()
    assert Verdict.REFUSED in verdicts and intake.refusal is not None and intake.refusal.status == 413


def test_intake_keeps_every_byte_in_order() -> None:
    intake = RequestIntake(10_000)
    request = b"POST / HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + (bytes(range(256)) * 12)[:3000]
    verdicts = [intake.feed(request[i:i + 7]) for i in range(0, len(request), 7)]
    assert verdicts[-1] is Verdict.COMPLETE and set(verdicts[:-1]) == {Verdict.WAIT}
    intake.spool.seek(0)
    assert intake.spool.read() == request
    intake.close()
