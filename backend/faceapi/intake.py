"""Receiving a whole HTTP/1.1 request before any thread works on it, sans I/O.

`RequestIntake` is fed the bytes of one request as they arrive and says when the
request is complete, too large, or malformed. It keeps the bytes in a spooled
temporary file (in memory up to `SPOOL_IN_MEMORY_BYTES`, on disk beyond), so a
worker can hold many slow requests without holding their bodies in memory.

Where a request ends is decided by the parser that serves it afterwards, so the
two cannot disagree (the classic recipe for request smuggling):

- The header block is parsed by gunicorn's own `gunicorn.http.message.Request`,
  with the worker's configuration: the same grammar (RFC 9112: ASCII-digit
  ``Content-Length``, one framing, no obsolete folding, no control bytes), the
  same limits and the same framing decision.
- A chunked body is followed by `_ChunkedBody`, which applies the grammar of
  gunicorn's ``ChunkedReader`` (RFC 9112 section 7.1) incrementally, and hands
  the trailer section to gunicorn's own header parser.

tests/test_intake.py feeds the intake and gunicorn the same corpus, plus generated
mutations, and checks that every request the intake lets through is read by
gunicorn to the same end, with the same head and body.

The socket side is `faceapi.worker.BufferingWorker`.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tempfile

from gunicorn.config import Config
from gunicorn.http import errors as http_errors
from gunicorn.http.body import CHUNK_EXT_RE
from gunicorn.http.body import ChunkedReader
from gunicorn.http.body import LengthReader
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader

# Per request, bytes kept in memory before the spool moves to a temporary file.
SPOOL_IN_MEMORY_BYTES = 256 * 1024
# Largest header block held while it arrives (gunicorn's own limits are 4094 bytes
# for the request line and 8190 a field); a longer one is refused with 431.
MAX_HEAD_BYTES = 64 * 1024

_HEAD_END = b"\r\n\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")


class Verdict(enum.Enum):
    """What the worker should do after a `RequestIntake.feed`."""

    WAIT = "wait"  # more bytes are needed
    COMPLETE = "complete"  # hand the request to a thread
    REFUSED = "refused"  # answer `RequestIntake.refusal` and close


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An answer the worker gives without the app: status line, and the service's JSON error."""

    status: int
    reason: str
    code: str
    message: str


def too_large(max_body_bytes: int) -> Refusal:
    return Refusal(413, "Content Too Large", "upload_too_large",
                   f"the request body is over the limit of {max_body_bytes} bytes")


# gunicorn's parse errors -> the answer. Messages are ours: the exceptions' texts quote the request's bytes.
_MALFORMED = {
    http_errors.InvalidRequestLine: "the request line is malformed",
    http_errors.InvalidRequestMethod: "the request method is not a valid HTTP method",
    http_errors.InvalidHTTPVersion: "the HTTP version is not HTTP/1.0 or HTTP/1.1",
    http_errors.InvalidHeaderName: "a header field name is malformed",
    http_errors.InvalidHeader: "a header field is malformed, repeated or contradicts another (RFC 9112)",
    http_errors.ObsoleteFolding: "a header field is folded over several lines (obsolete, RFC 9112 section 5.2)",
    http_errors.InvalidSchemeHeaders: "the request's scheme headers contradict each other",
    http_errors.InvalidChunkSize: "a chunk size is malformed (RFC 9112 section 7.1)",
    http_errors.InvalidChunkExtension: "a chunk extension is malformed (RFC 9112 section 7.1.1)",
    http_errors.ChunkMissingTerminator: "a chunk does not end with CRLF (RFC 9112 section 7.1)",
}
_OTHER_REFUSALS = {
    http_errors.LimitRequestLine: Refusal(414, "URI Too Long", "uri_too_long",
                                          "the request line is over gunicorn's limit of 4094 bytes"),
    http_errors.LimitRequestHeaders: Refusal(431, "Request Header Fields Too Large", "header_fields_too_large",
                                             "the header block, or one of its fields, is over the limit"),
    http_errors.ExpectationFailed: Refusal(417, "Expectation Failed", "expectation_failed",
                                           "the only expectation this service meets is 100-continue"),
    http_errors.UnsupportedTransferCoding: Refusal(501, "Not Implemented", "unsupported_transfer_coding",
                                                   "the only transfer coding this service reads is chunked"),
}
MALFORMED_REQUEST = Refusal(400, "Bad Request", "malformed_request", "the request is not valid HTTP/1.1")


def refusal_for(error: Exception) -> Refusal:
    """The answer to a request that gunicorn's parser (or the chunk scanner) refused with ``error``."""
    for cls in type(error).__mro__:
        if cls in _OTHER_REFUSALS:
            return _OTHER_REFUSALS[cls]
        if cls in _MALFORMED:
            return dataclasses.replace(MALFORMED_REQUEST, message=_MALFORMED[cls])
    return MALFORMED_REQUEST


class RequestIntake:
    """One request's bytes, received until complete.

    :param max_body_bytes: largest body accepted; a larger declared or received body is refused with 413.
    :param cfg: the gunicorn configuration whose parser will serve the request (its limits and policies).
    :param peer_addr: the client's address, as gunicorn's parser takes it.
    """

    def __init__(self, max_body_bytes: int, cfg: Config | None = None, peer_addr: object = ("127.0.0.1", 0)) -> None:
        self.max_body_bytes = max_body_bytes
        self.cfg = cfg or Config()
        self.peer_addr = peer_addr
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
        self.request: Request | None = None  # the parsed header block, once it is in
        self.refusal: Refusal | None = None  # why the request was refused, with `Verdict.REFUSED`
        self.expects_continue = False  # the client waits for "100 Continue" before its body
        self._head = bytearray()
        self._line_checked = False  # the request line has been parsed on its own
        self._body_left = 0  # bytes of a Content-Length body still to come
        self._chunks: _ChunkedBody | None = None

    @property
    def method(self) -> str:
        """The request's method once its header block parsed ("" before, or when it did not)."""
        return self.request.method if self.request is not None else ""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The parsed header fields, names upper-cased as gunicorn gives them."""
        return self.request.headers if self.request is not None else []

    def feed(self, data: bytes) -> Verdict:
        """Take the next bytes from the client and say whether the request is complete."""
        if self.refusal is not None:
            return Verdict.REFUSED
        try:
            if self.request is None:
                return self._feed_head(data)
            self.spool.write(data)
            return self._feed_body(data)
        except http_errors.ParseException as error:
            return self._refuse(refusal_for(error))
        except _BodyTooLarge:
            return self._refuse(too_large(self.max_body_bytes))

    def close(self) -> None:
        """Release the spool (its temporary file, if it has one)."""
        self.spool.close()

    def _refuse(self, refusal: Refusal) -> Verdict:
        self.refusal = refusal
        return Verdict.REFUSED

    def _feed_head(self, data: bytes) -> Verdict:
        searched = max(0, len(self._head) - 3)
        self._head += data
        # Parse when gunicorn would decide: the request line or the whole block is in, a bare LF, the limit.
        line_in = not self._line_checked and self._head.find(b"\r\n", 2) >= 0
        ended = self._head.find(_HEAD_END, searched) >= 0
        if not (line_in or ended or len(self._head) > MAX_HEAD_BYTES or _BARE_LF.search(self._head, searched)):
            return Verdict.WAIT
        self._line_checked = self._line_checked or line_in
        parsed = self._parse_head(bytes(self._head))
        if parsed is None:
            if len(self._head) > MAX_HEAD_BYTES:
                return self._refuse(_OTHER_REFUSALS[http_errors.LimitRequestHeaders])
            return Verdict.WAIT
        self.request, consumed = parsed
        head, rest = bytes(self._head[:consumed]), bytes(self._head[consumed:])
        self._head = bytearray()
        reader = self.request.body.reader
        if isinstance(reader, ChunkedReader):
            self._chunks = _ChunkedBody(self.request, reader, self.max_body_bytes)
        else:
            assert isinstance(reader, LengthReader)
            self._body_left = reader.length
            if self._body_left > self.max_body_bytes:
                raise _BodyTooLarge
            if self._body_left == 0:
                self.spool.write(head + rest)
                return Verdict.COMPLETE
        self.expects_continue = self.request.version >= (1, 1) and any(
            name == "EXPECT" and value.lower() == "100-continue" for name, value in self.request.headers)
        if self.expects_continue:
            # The worker answers "100 Continue" now; without the field gunicorn does not answer it again.
            head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:"))
        self.spool.write(head + rest)
        return self._feed_body(rest)

    def _parse_head(self, data: bytes) -> tuple[Request, int] | None:
        """gunicorn's parse of the header block, and its length; None while it needs more bytes."""
        source = _BytesUnreader(data)
        try:
            request = Request(self.cfg, source, self.peer_addr)
        except http_errors.NoMoreData:
            return None
        return request, len(data) - len(source.take_buffered())

    def _feed_body(self, data: bytes) -> Verdict:
        if self._chunks is not None:
            return Verdict.COMPLETE if self._chunks.feed(data) else Verdict.WAIT
        self._body_left -= len(data)
        return Verdict.COMPLETE if self._body_left <= 0 else Verdict.WAIT


class _BytesUnreader(Unreader):
    """gunicorn's reader interface over bytes already received."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data


class _State(enum.Enum):
    SIZE = "size line"
    DATA = "chunk data"
    DATA_END = "CRLF after the data"
    TRAILER = "trailer section"
    DONE = "done"


class _ChunkedBody:
    """Follows a chunked body (RFC 9112 section 7.1) as it arrives, by the grammar of gunicorn's ChunkedReader.

    Data counts against the body limit, and the framing around it (size lines,
    CRLFs, trailers) against a limit of its own, so a small body sent in many
    small chunks is not refused, and a flood of framing is.
    """

    def __init__(self, request: Request, reader: ChunkedReader, max_body_bytes: int) -> None:
        self._request = request
        self._max_line = reader.limit_chunk_size_line
        self._max_trailer = reader.limit_trailer_section
        self._max_body = max_body_bytes
        self._max_framing = max(max_body_bytes, 1024 * 1024)
        self._state = _State.SIZE
        self._pending = bytearray()  # a framing element still arriving
        self._data_left = 0  # bytes of the current chunk still to come
        self._body_bytes = 0
        self._framing_bytes = 0

    def feed(self, data: bytes) -> bool:
        """Follow the next bytes; True once the last chunk and the trailer section are in."""
        view = memoryview(data)
        while view and self._state is not _State.DONE:
            if self._state is _State.DATA:
                taken = min(self._data_left, len(view))
                self._data_left -= taken
                view = view[taken:]
                if not self._data_left:
                    self._state = _State.DATA_END
                continue
            self._pending += view
            view = memoryview(self._take_framing())
        return self._state is _State.DONE

    def _take_framing(self) -> bytes:
        """Consume the framing element at the start of ``_pending``; the bytes after it (b"" while incomplete)."""
        pending = self._pending
        if self._state is _State.DATA_END:
            if len(pending) < 2:
                return b""
            if pending[:2] != b"\r\n":
                raise http_errors.ChunkMissingTerminator(bytes(pending[:2]))
            return self._consume(2, _State.SIZE)
        if self._state is _State.TRAILER:
            return self._take_trailer()
        end = pending.find(b"\r\n")
        if end < 0:
            if len(pending) > self._max_line:
                raise http_errors.InvalidChunkSize(b"line over the limit with no terminator")
            return b""
        size = _chunk_size(bytes(pending[:end]))
        if size > self._max_body - self._body_bytes:
            raise _BodyTooLarge
        self._body_bytes += size
        self._data_left = size
        return self._consume(end + 2, _State.DATA if size else _State.TRAILER)

    def _take_trailer(self) -> bytes:
        pending = self._pending
        if pending[:2] == b"\r\n":
            return self._consume(2, _State.DONE)
        end = pending.find(_HEAD_END)
        if end < 0:
            if len(pending) > self._max_trailer:
                raise http_errors.LimitRequestHeaders("limit request trailer section size")
            if pending.count(b"\n") != pending.count(b"\r\n"):
                raise http_errors.InvalidHeader("bare LF as line terminator")
            return b""
        self._request.parse_headers(bytes(pending[:end]), from_trailer=True)
        return self._consume(end + 4, _State.DONE)

    def _consume(self, length: int, state: _State) -> bytes:
        self._framing_bytes += length
        if self._framing_bytes > self._max_framing:
            raise _BodyTooLarge
        rest = bytes(self._pending[length:])
        self._pending = bytearray()
        self._state = state
        return rest


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line, by the rules of gunicorn's ChunkedReader.parse_chunk_size."""
    size, *extension = line.split(b";", 1)
    if extension:
        if b"\r" in extension[0]:
            raise http_errors.InvalidChunkExtension("bare CR not allowed")
        size = size.rstrip(b" \t")
    if not size or any(digit not in b"0123456789abcdefABCDEF" for digit in size):
        raise http_errors.InvalidChunkSize(size)
    if extension and not CHUNK_EXT_RE.fullmatch(b";" + extension[0]):
        raise http_errors.InvalidChunkExtension("invalid chunk extension")
    return int(size, 16) if len(size.lstrip(b"0")) <= 16 else 1 << 64


class _BodyTooLarge(Exception):
    """The body, or the framing around a chunked one, is over its limit."""
