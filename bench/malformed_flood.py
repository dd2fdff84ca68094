"""Malformed requests against the real service: do they cost workers, and does /health keep answering?

Usage: .venv/bin/python bench/malformed_flood.py [--rate 20] [--seconds 8] [--workers 1]

Starts gunicorn with the project's config, then sends ``--rate`` malformed requests a
second (one per new connection: issue 17's request, or with ``--mix`` a few kinds in turn) for
``--seconds``, while a prober sends GET /health every 0.2 s with a 2 s timeout.
Prints the worker processes booted after start-up, the probes that failed, the
/health latencies, and how the malformed requests were answered. Traffic goes to
127.0.0.1 only, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import socket
import tempfile
import time

import common  # noqa: F401 - puts the repository on sys.path
from tests.servers import GunicornServer
from tests.slow_clients import Prober
from tests.slow_clients import summary

# Issue 17's request first: a superscript two (latin-1 0xb2) passes str.isdigit() but not int().
ATTACKS = [
    b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
    b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n",
    b"POST /recognize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\xb2\r\n",
    b"POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
]


def send_one(port: int, request: bytes) -> bytes:
    """One request on a fresh connection; the first line of the answer (or how it ended)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(200)
    except OSError as error:
        return type(error).__name__.encode()
    return answer.split(b"\r\n", 1)[0] or b"(closed without an answer)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mix", action="store_true", help="cycle through several malformed requests")
    args = parser.parse_args()
    attacks = ATTACKS if args.mix else ATTACKS[:1]
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": str(args.workers), "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            boots_at_start = server.log().count("Booting worker")
            answers: collections.Counter[bytes] = collections.Counter()
            with Prober(server.port, None, timeout_s=2, interval_s=0.2) as prober:
                started = time.monotonic()
                sent = 0
                while (elapsed := time.monotonic() - started) < args.seconds:
                    if sent < elapsed * args.rate:
                        answers[send_one(server.port, attacks[sent % len(attacks)])] += 1
                        sent += 1
                    else:
                        time.sleep(0.005)
            booted = server.log().count("Booting worker") - boots_at_start
        failed = len(prober.failures)
        print(f"{sent} malformed requests in {args.seconds:g} s to {args.workers} worker(s)")
        print(f"  workers booted after start-up: {booted}")
        print(f"  /health probes failed: {failed} of {len(prober.health)} {prober.failures[:3]}")
        print(f"  /health {summary([s for s in prober.health if s < prober.timeout_s])}")
        for first_line, count in answers.most_common():
            print(f"  answered {first_line.decode(errors='replace')!r}: {count}")


if __name__ == "__main__":
    main()
