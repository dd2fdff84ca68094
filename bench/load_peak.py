"""Peak PSS and throughput under `compare.py`'s closed-loop load, for this checkout or another one (A/B).

Usage: .venv/bin/python bench/load_peak.py [--checkout DIR] [--seconds 20] [--concurrency 8] [--workers 2]

Starts a fresh gunicorn of the checkout (default: this one; another, e.g. made with ``git worktree add``,
runs its own code and benchmarks), enrolls obama.jpg, and runs `compare.py`'s load (480p, 1080p, 12 MP and
the group photo, back to back) while sampling the PSS of master + workers. Alternate two checkouts in one
session to compare them side by side.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkout", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout.resolve() / "bench"))
    import compare
    from common import FACES
    from common import all_pids
    from common import phone_photo
    from common import pss_mb
    from tests.servers import GunicornServer
    from tests.servers import upload

    photos = [(FACES / "examples/obama-480p.jpg").read_bytes(), (FACES / "examples/obama-1080p.jpg").read_bytes(),
              phone_photo(4000, 3000), (FACES / "examples/knn_examples/test/obama_and_biden.jpg").read_bytes()]
    with tempfile.TemporaryDirectory() as scratch:
        env = {"WEB_CONCURRENCY": str(args.workers), "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}
        with GunicornServer(pathlib.Path(scratch) / "gunicorn.log", env) as server:
            reference = upload(FACES / "tests/test_images/obama.jpg")
            assert server.client().post("/enroll", {"name": "obama", "image": reference}).status_code == 201
            time.sleep(1)
            idle = pss_mb(all_pids(server))
            rate, errors, peak = compare.throughput(server, photos, args.concurrency, args.seconds)
    print(f"{args.checkout}: PSS idle {idle:.1f} MB, peak {peak:.1f} MB; c={args.concurrency} {rate:.2f} req/s, "
          f"{errors} errors")


if __name__ == "__main__":
    main()
