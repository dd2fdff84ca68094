"""gunicorn settings for faceapi (``gunicorn --config gunicorn.conf.py``).

Values come from `faceapi.config.Settings`, the one place the environment is
read, so a bad variable stops the master with a message before any worker forks.
Laid out like gunicorn's examples/example_config.py.
"""

import atexit
import gc
import os
import shutil
import sys
import tempfile
import time

# One BLAS thread per call, before numpy loads: a worker's request threads are the parallelism,
# and a BLAS pool per thread would oversubscribe the cores (docs/ENCODER.md, sizing).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend"))

from faceapi.config import ConfigError  # noqa: E402
from faceapi.config import process_settings  # noqa: E402
from faceapi.memory import tune_malloc  # noqa: E402

try:
    _settings = process_settings()
except ConfigError as error:
    # The message names every bad variable; gunicorn would wrap it in a traceback.
    sys.exit(f"faceapi: {error}")
# Metrics from every worker, summed at each scrape (prometheus_client's multiprocess mode): each process
# writes its counts to files in this directory, which must start empty, so every start gets a new one.
# It must exist before the app loads, and so before any server hook runs; it is removed when this
# process exits, however it exits (a stop, --check-config, a failed boot), but not by its forked workers.
_metrics_dir = tempfile.mkdtemp(prefix=f"faceapi-metrics-{os.getpid()}-",
                                dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def _remove_metrics_dir(owner: int = os.getpid()) -> None:
    if os.getpid() == owner:
        for _ in range(5):  # a file written while the tree was removed (a worker's last count) is removed next
            shutil.rmtree(_metrics_dir, ignore_errors=True)
            if not os.path.exists(_metrics_dir):
                break
            time.sleep(0.1)


atexit.register(_remove_metrics_dir)

# Before the app loads and before fork: 2 malloc arenas and a fixed mmap threshold (FACEAPI_MALLOC_MMAP_THRESHOLD),
# so image buffers go back to the system after each request (docs/BENCHMARKS.md, memory).
tune_malloc(mmap_threshold_bytes=_settings.malloc_mmap_threshold)

# The app: the factory call, loaded by the master (see preload_app).
pythonpath = "backend"
wsgi_app = "faceapi:create_app()"

# Server socket. PORT is set by App Platform; all interfaces, since the platform's router connects from outside.
bind = f"0.0.0.0:{_settings.port}"

# Worker processes. WEB_CONCURRENCY, else one per core and at most one per 128 MiB (faceapi.config.default_workers).
workers = _settings.workers
# gunicorn's gthread worker, but each request is received whole in the worker's event loop
# before a thread serves it, so slow clients hold no thread (faceapi.worker, docs/BENCHMARKS.md).
# Threads per worker: detection (dlib's HOG) and encoding (numpy's BLAS) release the GIL, so threads
# overlap them with uploads and JSON; FACEAPI_MAX_CONCURRENT_IMAGES bounds the images analysed at once.
worker_class = "faceapi.worker.BufferingWorker"
threads = _settings.threads
# A 12 MP photo takes well under a second; 120 s only catches a stuck worker.
timeout = 120
graceful_timeout = 30
keepalive = 5

# Server mechanics.
# Load the models (32 MB) once in the master; workers share those pages copy-on-write.
preload_app = True
# Recycle a worker after about 1000 requests, staggered by up to 100, to bound slow leaks in native code.
max_requests = 1000
max_requests_jitter = 100
# The heartbeat file on tmpfs: a disk-backed /tmp can block os.fchmod and get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# No control socket: nothing here uses gunicornc, and instances on one host would share its one path.
control_socket_disable = True

# Logging to stderr, which App Platform and systemd collect. No gunicorn access log: the app
# logs one line per request itself, with its request id (faceapi.requestlog).
accesslog = None
errorlog = "-"
loglevel = _settings.log_level


# Server hooks.
def pre_fork(server, worker):
    """Move everything loaded so far out of the garbage collector's reach, so collections in the
    workers do not write to (and so un-share) the master's pages."""
    gc.freeze()


def post_fork(server, worker):
    server.log.info("worker %s ready (threads=%s)", worker.pid, threads)


def child_exit(server, worker):
    """Drop a finished worker's live-gauge files (prometheus_client's multiprocess clean-up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

