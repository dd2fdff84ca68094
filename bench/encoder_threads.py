"""Do two threads of one process encode at once? Seconds during which both were inside an encoding.

Usage: .venv/bin/python bench/encoder_threads.py [--runs 3]

The service's encoder releases the GIL for its work, so a worker's threads encode in parallel; dlib's own
encoder holds it for whole calls. Each run starts a fresh interpreter with a 100 s switch interval, so
Python never takes the GIL from a thread by force: the second thread runs while the first encodes only
if the first released it. dlib's encoder is the control, and should show no overlap (once, on a paused
machine, it did: that run is void). This measures timing, so it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        script = textwrap.dedent(f"""
                import json, sys, threading, time
                import dlib, numpy as np
                sys.path.insert(0, {str(ROOT / 'backend')!r})
                from faceapi.encoder import FaceEncoder
                from faceapi.models import ModelPaths
                paths = ModelPaths.from_package()
                chips = np.random.default_rng(1).integers(0, 256, size=(2, 150, 150, 3), dtype=np.uint8)
                ours = FaceEncoder.load(paths.encoder)
                theirs = dlib.face_recognition_model_v1(str(paths.encoder))
                def ours_call():
                    ours.encode(chips)
                def theirs_call():
                    theirs.compute_face_descriptor(chips[0])
                def overlap(call):
                    spans = {{0: [], 1: []}}
                    def run(index):
                        for _ in range(4):
                            start = time.perf_counter(); call(); spans[index].append((start, time.perf_counter()))
                    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
                    for thread in threads: thread.start()
                    for thread in threads: thread.join()
                    return sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in spans[0] for b0, b1 in spans[1])
                sys.setswitchinterval(100)
                runs = []
                for _ in range(1):
                    runs.append({{"dlib": overlap(theirs_call), "ours": overlap(ours_call)}})
                    if runs[-1]["dlib"] == 0.0:
                        break
                print(json.dumps(runs))
            """)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                                env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"})
        run = json.loads(result.stdout)[0]
        verdict = "void (the control overlapped)" if run["dlib"] else "valid"
        print(f"overlap, s: ours {run['ours']:.3f}, dlib's {run['dlib']:.3f} ({verdict})")


if __name__ == "__main__":
    main()
