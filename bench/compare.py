"""faceapi next to the peer (plain face_recognition), side by side in one run.

Usage: .venv/bin/python bench/compare.py [--repeats 5] [--load-seconds 20] [--workers 2]

Needs face_recognition installed with --no-deps (./scripts/test installs it). Stages:
boot to ready, latency per photo size, closed-loop throughput at concurrency 1/4/8,
memory (PSS of master + workers: idle, peak under load, and the per-request peak of
a 12 MP photo), and 1:N matching time. Prints a progress line per stage and a
Markdown table at the end; faceapi/peer ratios are of medians from this run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import pathlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np

from common import FACES
from common import ROOT
from common import all_pids
from common import phone_photo
from common import pss_mb
from faceapi.config import Settings
from faceapi.matching import Gallery
from faceapi.openset import match_faces
from tests.servers import GunicornServer
from tests.servers import upload


class PeakSampler:
    """Samples a function in a background thread; `peak` is the largest value seen."""

    def __init__(self, sample: Callable[[], float], interval_s: float = 0.05) -> None:
        self.sample, self.interval_s, self.peak = sample, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recognize(server: GunicornServer, data: bytes, timeout: float = 300) -> bool:
    try:
        response = server.client().request("POST", "/recognize", {"image": upload(data, "photo.jpg")}, timeout=timeout)
    except OSError:
        return False
    return response.status_code == 200


def latency(server: GunicornServer, data: bytes, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        assert recognize(server, data), "request failed"
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def throughput(server: GunicornServer, mix: list[bytes], concurrency: int, seconds: float) -> tuple[float, int, float]:
    """Closed loop: ``concurrency`` clients send back to back for ``seconds``. Returns (req/s, errors, peak PSS MB)."""
    deadline = time.monotonic() + seconds
    done = [0, 0]
    lock = threading.Lock()

    def client(index: int) -> None:
        i = index
        while time.monotonic() < deadline:
            ok = recognize(server, mix[i % len(mix)])
            i += 1
            with lock:
                done[0 if ok else 1] += 1

    start = time.monotonic()
    with PeakSampler(lambda: pss_mb(all_pids(server))) as sampler:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(client, range(concurrency)))
    return done[0] / (time.monotonic() - start), done[1], sampler.peak


def request_peak_mb(server: GunicornServer, data: bytes) -> float:
    """Growth of the workers' total PSS while one 12 MP request runs alone."""
    before = pss_mb(server.worker_pids())
    with PeakSampler(lambda: pss_mb(server.worker_pids()), 0.01) as sampler:
        assert recognize(server, data)
    return sampler.peak - before


def match_time_ms(size: int, use_faceapi: bool) -> float:
    rng = np.random.default_rng(size)
    known = rng.normal(size=(size, 128)).astype(np.float32) / 11
    names = [f"p{i}" for i in range(size)]
    query = rng.normal(size=(1, 128)) / 11
    times = []
    if use_faceapi:
        gallery = Gallery.build(names, known)
        for _ in range(20):
            start = time.perf_counter()
            match_faces(gallery, query, Settings().false_match_rate)
            times.append(time.perf_counter() - start)
    else:
        from tests.oracle import face_recognition

        known_list = list(known.astype(np.float64))  # the peer keeps a list of float64 arrays
        for _ in range(20):
            start = time.perf_counter()
            distances = face_recognition.face_distance(known_list, query[0])
            int(np.argmin(distances))
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-dir", default="/tmp/faceapi-bench", help="where both servers' logs are kept")
    args = parser.parse_args()
    log_dir = pathlib.Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    photos = {
        "480p": (FACES / "examples/obama-480p.jpg").read_bytes(),
        "1080p": (FACES / "examples/obama-1080p.jpg").read_bytes(),
        "12 MP": phone_photo(4000, 3000),
        "group (obama_and_biden.jpg)": (FACES / "examples/knn_examples/test/obama_and_biden.jpg").read_bytes(),
    }
    rows: list[tuple[str, float, float]] = []

    def row(label: str, ours: float, peer: float) -> None:
        rows.append((label, ours, peer))
        ratio = ours / peer if peer else float("nan")
        print(f"  {label}: faceapi {ours:.3f}, peer {peer:.3f}, ratio {ratio:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        workers = str(args.workers)
        print("[1/5] boot to ready", flush=True)
        started = time.perf_counter()
        ours = stack.enter_context(GunicornServer(
            log_dir / "faceapi.log",
            {"WEB_CONCURRENCY": workers, "FACEAPI_STORE_PATH": f"{scratch}/faces.pkl"}))
        ours_boot = time.perf_counter() - started
        started = time.perf_counter()
        peer = stack.enter_context(GunicornServer(
            log_dir / "peer.log", {"PEER_STORE": f"{scratch}/peer.pkl"},
            args=["--config", str(ROOT / "bench/peer.conf.py"), "--workers", workers,
                  "--chdir", str(ROOT / "bench"), "peer_app:app"],
            ready_path="/health"))
        peer_boot = time.perf_counter() - started
        row("boot to ready (s)", ours_boot, peer_boot)
        for server in (ours, peer):
            reference = upload(FACES / "tests/test_images/obama.jpg")
            assert server.client().post("/enroll", {"name": "obama", "image": reference}).status_code == 201
        time.sleep(1)
        row("PSS idle, master + workers (MB)", pss_mb(all_pids(ours)), pss_mb(all_pids(peer)))

        print(f"[2/5] latency, {args.repeats} sequential requests per photo", flush=True)
        for label, data in photos.items():
            ours_p50, ours_p95 = latency(ours, data, args.repeats)
            peer_p50, peer_p95 = latency(peer, data, args.repeats)
            row(f"{label} p50 (s)", ours_p50, peer_p50)
            row(f"{label} p95 (s)", ours_p95, peer_p95)

        print("[3/5] per-request memory peak, one 12 MP photo alone", flush=True)
        row("12 MP request, worker PSS growth (MB)", request_peak_mb(ours, photos["12 MP"]),
            request_peak_mb(peer, photos["12 MP"]))

        print(f"[4/5] closed-loop throughput, {args.load_seconds:.0f} s per level, mix of all photos", flush=True)
        mix = list(photos.values())
        peaks = [0.0, 0.0]
        for concurrency in (1, 4, 8):
            ours_rps, ours_errors, ours_peak = throughput(ours, mix, concurrency, args.load_seconds)
            peer_rps, peer_errors, peer_peak = throughput(peer, mix, concurrency, args.load_seconds)
            peaks = [max(peaks[0], ours_peak), max(peaks[1], peer_peak)]
            row(f"throughput c={concurrency} (req/s)", ours_rps, peer_rps)
            row(f"errors c={concurrency}", ours_errors, peer_errors)
        row("PSS peak under load, master + workers (MB)", *peaks)

    print("[5/5] 1:N matching, one face against N synthetic encodings", flush=True)
    for size in (1_000, 10_000, 100_000):
        row(f"match 1 face vs {size // 1000}k (ms)", match_time_ms(size, True), match_time_ms(size, False))

    print("\n| measure | faceapi | peer | faceapi/peer |\n|---|---|---|---|")
    for label, ours_value, peer_value in rows:
        ratio = f"{ours_value / peer_value:.3f}" if peer_value else "-"
        print(f"| {label} | {ours_value:.3f} | {peer_value:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
