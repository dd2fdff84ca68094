"""Raw HTTP/1.1 requests for the framing tests: valid ones, malformed ones, and mutations of the valid ones.

`VALID` are requests a client may send (sized, chunked with extensions and
trailers, Expect, HTTP/1.0, pipelined). `MALFORMED` is a corpus of what RFC 9112
refuses or what has split parsers before: request lines, header fields, framing
conflicts, chunk encodings. `mutations` makes more from the valid ones, byte by
byte, with the characters that matter to a parser. Each request targets /health or
/detect, which store nothing, so a fuzz run leaves the service as it found it.
"""

from __future__ import annotations

from hypothesis import strategies as st


def _request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


VALID: list[bytes] = [
    _request("GET /health HTTP/1.1\nHost: x\n"),
    _request("GET /health?probe=1 HTTP/1.0\n"),
    _request("GET /health HTTP/1.1\nHost: x\nOrigin: http://page.example\nX-Request-ID: abc-1\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Type: image/jpeg\nContent-Length: 5\n", b"abcde"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 0\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 4\nExpect: 100-continue\n", b"wxyz"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n",
             b"3\r\nabc\r\n2;name=value\r\nde\r\nA ; q=\"x y\"\r\n0123456789\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: gzip, chunked\n", b"1\r\na\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"0\r\nX-Checksum: 1\r\n\r\n"),
    # Pipelined: the intake must stop at the first request's end.
    _request("GET /health HTTP/1.1\nHost: x\n") + _request("GET /health HTTP/1.1\nHost: x\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 2\n", b"ab") + b"GET /health HTTP/1.1\r\n",
    b"\r\n" + _request("GET /health HTTP/1.1\nHost: x\n"),  # one empty line before the request line is allowed
]

MALFORMED: list[bytes] = [
    # Issue 17: a superscript two passes str.isdigit() but is no ASCII digit.
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: \xb2\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: \xc2\xb2\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: +5\n", b"abcde"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: -1\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 5 5\n", b"abcde"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 0x5\n", b"abcde"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 1\nContent-Length: 2\n", b"ab"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 2\n", b"ab"),
    _request("POST /detect HTTP/1.1\nHost: x\nContent-Length: 3\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked, chunked\n", b"0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked, gzip\n", b"0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: xchunked\n", b"0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: identity\n", b"ab"),
    _request("POST /detect HTTP/1.0\nHost: x\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding : chunked\n", b"0\r\n\r\n"),
    # Chunk encodings.
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"\xb2\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"0x2\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"-2\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b" 2\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2 \r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2\r\nabc\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2\r\nab\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2;\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2;a\rb\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2;a=\"b\r\nab\r\n0\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"f" * 40 + b"\r\nab\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"0\r\nContent-Length: 5\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"0\r\nX: a\nY: b\r\n\r\n"),
    _request("POST /detect HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"0\r\nX\r\n\r\n"),
    # Request lines.
    b"GET /health HTTP/1.1\nHost: x\n\n",
    b"GET /health\r\n\r\n",
    b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1 \r\nHost: x\r\n\r\n",
    b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /h\xe9alth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"get /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GETTTTTTTTTTTTTTTTTTTTT /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.10\r\nHost: x\r\n\r\n",
    b"GET /health http/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\r\n\r\n",
    # Header fields.
    _request("GET /health HTTP/1.1\nHost: x\nX-Folded: a\n b\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Folded: a\n\tb\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Nul: a\x00b\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Ctl: a\x01b\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Del: a\x7fb\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Cr: a\rb\n"),
    _request("GET /health HTTP/1.1\nHost: x\nNoColon\n"),
    _request("GET /health HTTP/1.1\nHost: x\n: empty-name\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX Space: a\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX\xb2: a\n"),
    _request("GET /health HTTP/1.1\nHost: x\nHost: y\n"),
    _request("GET /health HTTP/1.1\nHost: x\nContent-Type: a\nContent-Type: b\n"),
    _request("GET /health HTTP/1.1\nHost: x\nExpect: 200-ok\n"),
    _request("GET /health HTTP/1.1\nHost: x\nX-Long: " + "a" * 9000 + "\n"),
    _request("GET /health HTTP/1.1\nHost: x\n" + "".join(f"X-{i}: a\n" for i in range(120))),
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 70_000,
    # Behind a valid request: the second one of a connection goes through the same checks.
    _request("GET /health HTTP/1.1\nHost: x\n") + b"GET /health HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
    _request("GET /health HTTP/1.1\nHost: x\n") + b"GET /health HTTP/1.1\r\nX-Endless: " + b"a" * 70_000,
]

# What a parser cares about, for mutations: line ends, separators, controls, digits, and non-ASCII look-alikes.
_ALPHABET = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b";", b",", b"=", b'"', b"\x00", b"\x7f", b"\xb2", b"\xff",
             b"0", b"1", b"9", b"a", b"f", b"A", b"-", b"+", b"chunked", b"Content-Length: 3\r\n",
             b"Transfer-Encoding: chunked\r\n"]


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes inserted, deleted or replaced."""
    request = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(request)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(_ALPHABET))
        if action == "insert":
            request[position:position] = piece
        elif action == "delete":
            del request[position:position + draw(st.integers(1, 4))]
        else:
            request[position:position + len(piece)] = piece
    return bytes(request)
