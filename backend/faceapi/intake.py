"""Receiving a whole HTTP/1.1 request before any thread works on it, sans I/O.

`RequestIntake` is fed the bytes of one request as they arrive and says when the
request is complete: its header block has ended and its body (``Content-Length``
or chunked) is all in. It keeps the bytes in a spooled temporary file (in memory
up to `SPOOL_IN_MEMORY_BYTES`, on disk beyond), so a worker can hold many slow
requests without holding their bodies in memory. It never interprets more of
HTTP than completeness needs: a malformed request counts as complete, and
gunicorn's own parser refuses it.

The socket side is `faceapi.worker.BufferingWorker`.
"""

from __future__ import annotations

import enum
import tempfile

# Per request, bytes kept in memory before the spool moves to a temporary file.
SPOOL_IN_MEMORY_BYTES = 256 * 1024
# A header block longer than this is handed on as it is, for gunicorn to refuse
# (its own limits are 4094 bytes a line and 100 fields).
MAX_HEAD_BYTES = 64 * 1024
_MAX_CHUNK_LINE_BYTES = 4096


class Verdict(enum.Enum):
    """What the worker should do after a `RequestIntake.feed`."""

    WAIT = "wait"  # more bytes are needed
    COMPLETE = "complete"  # hand the request to a thread
    TOO_LARGE = "too_large"  # the body is over the limit: answer 413 and close


class RequestIntake:
    """One request's bytes, received until complete.

    :param max_body_bytes: largest body accepted; a larger declared or received body is `Verdict.TOO_LARGE`.
    """

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
        self.method = ""
        self.expects_continue = False  # the client waits for "100 Continue" before its body
        self._head = bytearray()
        self._head_done = False
        self._body_left: int | None = None  # bytes of a Content-Length body still to come
        self._chunks: _ChunkScanner | None = None
        self._body_bytes = 0

    def feed(self, data: bytes) -> Verdict:
        """Take the next bytes from the client and say whether the request is complete."""
        if self._head_done:
            self.spool.write(data)
            return self._feed_body(data)
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                return self._flush_head(bytes(self._head), Verdict.COMPLETE)
            return Verdict.WAIT
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head_done = True
        self._head = bytearray()
        verdict = self._read_head(head)
        if verdict is not Verdict.WAIT:
            return self._flush_head(head + rest, verdict)
        if self.expects_continue:
            # The worker answers "100 Continue" now; without the field gunicorn does not answer it again.
            head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:"))
        self.spool.write(head)
        self.spool.write(rest)
        return self._feed_body(rest)

    def close(self) -> None:
        """Release the spool (its temporary file, if it has one)."""
        self.spool.close()

    def _flush_head(self, data: bytes, verdict: Verdict) -> Verdict:
        self._head_done = True
        self.spool.write(data)
        return verdict

    def _read_head(self, head: bytes) -> Verdict:
        """Learn the body's framing from the header block; COMPLETE when there is no body to wait for."""
        lines = head.decode("latin-1").split("\r\n")
        self.method = lines[0].split(" ", 1)[0][:16]
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        if "chunked" in fields.get("transfer-encoding", ""):
            self._chunks = _ChunkScanner()
        elif "content-length" in fields:
            if not fields["content-length"].isdigit():
                return Verdict.COMPLETE  # malformed: gunicorn answers 400
            self._body_left = int(fields["content-length"])
            if self._body_left > self.max_body_bytes:
                return Verdict.TOO_LARGE
        else:
            return Verdict.COMPLETE
        self.expects_continue = fields.get("expect") == "100-continue"
        return Verdict.WAIT

    def _feed_body(self, data: bytes) -> Verdict:
        self._body_bytes += len(data)
        if self._chunks is not None:
            if self._body_bytes > self.max_body_bytes + _MAX_CHUNK_LINE_BYTES:
                return Verdict.TOO_LARGE
            return Verdict.COMPLETE if self._chunks.feed(data) else Verdict.WAIT
        assert self._body_left is not None
        self._body_left -= len(data)
        return Verdict.COMPLETE if self._body_left <= 0 else Verdict.WAIT


class _ChunkScanner:
    """Follows a chunked body's framing (RFC 9112 section 7.1) far enough to see where it ends."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._data_left = 0  # bytes of chunk data, plus its CRLF, still to skip
        self._in_trailer = False

    def feed(self, data: bytes) -> bool:
        """True once the last chunk and the trailer section are in (or the framing is broken)."""
        view = memoryview(data)
        while view:
            if self._data_left:
                skipped = min(self._data_left, len(view))
                self._data_left -= skipped
                view = view[skipped:]
                continue
            end = bytes(view).find(b"\n")
            if end < 0:
                self._line += view
                return len(self._line) > _MAX_CHUNK_LINE_BYTES
            line = bytes(self._line + view[:end]).rstrip(b"\r")
            self._line = bytearray()
            view = view[end + 1 :]
            if self._in_trailer:
                if not line:
                    return True
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return True  # broken framing: gunicorn answers 400
            if size == 0:
                self._in_trailer = True
            else:
                self._data_left = size + 2
        return False
