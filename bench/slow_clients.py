"""Slow clients against the real service: /health and a small /recognize while connections trickle.

Usage: .venv/bin/python bench/slow_clients.py [--connections 64] [--seconds 40] [--variant NAME ...]

Each variant starts gunicorn (2 workers) with the project's config plus its own
overrides, opens the trickling connections (headers of a multipart /recognize, then
one byte every 2 s each), and meanwhile times GET /health and POST /recognize of
obama-480p.jpg, one after the other. Prints the median and worst of each, the
probes that failed (30 s timeout), and how the trickling connections ended.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import tempfile

from common import FACES
from tests.servers import GunicornServer
from tests.slow_clients import attack
from tests.slow_clients import summary

# Variant -> (extra environment, extra gunicorn arguments).
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "default": ({}, []),
    "default, 10 s timeout": ({"FACEAPI_REQUEST_TIMEOUT_S": "10"}, []),
    "gthread 2x4": ({"FACEAPI_THREADS": "4"}, ["--worker-class", "gthread"]),
    "gthread 2x64": ({"FACEAPI_THREADS": "64"}, ["--worker-class", "gthread"]),
    # Needs `pip install gevent` (not a dependency: measured as an option only).
    "gevent": ({}, ["--worker-class", "gevent"]),
}


def run(name: str, connections: int, seconds: float, photo: bytes) -> None:
    env, args = VARIANTS[name]
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": "2", "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl", **env}
        server = GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env, ["--config", "gunicorn.conf.py", *args])
        with server, attack(server.port, photo, connections) as (trickle, prober):
            prober._stop.wait(seconds)
        endings = collections.Counter(answer.split(b"\r\n", 1)[0].decode(errors="replace")
                                      for answer in trickle.answers)
        print(f"{name}: {connections} trickling for {seconds:.0f} s")
        print(f"  /health    {summary(prober.health)}")
        print(f"  /recognize {summary(prober.recognize)}")
        print(f"  failed probes: {len(prober.failures)} {prober.failures[:3]}")
        print(f"  trickling connections closed by the server: {trickle.closed_by_server}, answers {dict(endings)}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    args = parser.parse_args()
    photo = (FACES / "examples/obama-480p.jpg").read_bytes()
    for name in args.variant or [name for name in VARIANTS if name != "gevent"]:
        run(name, args.connections, args.seconds, photo)


if __name__ == "__main__":
    main()
