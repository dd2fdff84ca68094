"""Settings: every knob of the service, declared once, read from the environment once.

Each setting names its environment variable, its default, how it is parsed and
checked, and one sentence for the README. `Settings.from_env` collects every bad
variable into one `ConfigError`, so a misconfigured deploy fails at start-up,
before fork, with a message that names all the mistakes at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """One or more environment variables are invalid; the message names each."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    env: str
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None]
    doc: str
    secret: bool = False  # never echoed in error messages

    def shown(self, value: Any) -> str:
        """``value`` as an error message may quote it."""
        return "<hidden>" if self.secret else repr(value)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _seconds(value: float) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a number of seconds greater than 0"


def _tolerance(value: float) -> str | None:
    if math.isfinite(value) and 0 < value <= 1:
        return None
    return "must be a number in (0, 1]"


def _min_side(value: int) -> str | None:
    return None if value >= 80 else "must be at least 80 (dlib's detection window)"


def _detect_side(value: int) -> str | None:
    return None if value == 0 else _min_side(value)


# URL schemes that select the PostgreSQL store (App Platform binds `postgresql://`; Heroku-style is `postgres://`).
POSTGRES_URL_SCHEMES = ("postgres://", "postgresql://")


def _database_url(value: str) -> str | None:
    if value == "" or value.startswith(POSTGRES_URL_SCHEMES):
        return None
    return "must start with postgresql:// (or be unset for the pickle store)"


def _api_key_digests(raw: str) -> tuple[str, ...]:
    """SHA-256 hex digests of the keys: ``sha256:<hex>`` entries as given, plain keys hashed here."""
    digests = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if entry.startswith("sha256:"):
            digest = entry.removeprefix("sha256:").lower()
            if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
                raise ValueError("a sha256: entry must hold 64 hex digits")
            digests.append(digest)
        else:
            digests.append(hashlib.sha256(entry.encode()).hexdigest())
    return tuple(digests)


_api_key_digests.__name__ = "list of keys or sha256:<hex> digests"


def _any(_value: Any) -> str | None:
    return None


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _log_level(value: str) -> str | None:
    levels = {"debug", "info", "warning", "error", "critical"}
    return None if value in levels else f"must be one of {', '.join(sorted(levels))}"


def default_workers() -> int:
    """Workers that fit this machine: one per core, but at most one per 128 MiB of memory.

    A worker's private memory under load is about 60-100 MB (the models are shared
    through preload and copy-on-write), so 128 MiB a worker keeps a 256 MB instance
    at one or two workers instead of the out-of-memory kill that cores alone would give.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, _memory_limit_bytes() // (128 * 1024 * 1024)))


def _memory_limit_bytes() -> int:
    """The container's memory limit (cgroup v2 or v1), else the machine's RAM."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as limit_file:
                raw = limit_file.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Field name -> how to read it. The order is the README's order.
_SPECS: dict[str, _Spec] = {
    "port": _Spec("PORT", int, lambda v: None if 0 < v < 65536 else "must be a TCP port (1-65535)",
                  "TCP port gunicorn listens on (on all interfaces); App Platform sets it."),
    "workers": _Spec("WEB_CONCURRENCY", int, _positive,
                     "gunicorn worker processes. Default: one per core, at most one per 128 MiB of memory."),
    "threads": _Spec("FACEAPI_THREADS", int, _positive,
                     "Threads per worker. They overlap uploads, JSON and store access; detection and encoding release the GIL, so images in different slots are analysed in parallel."),
    "max_concurrent_images": _Spec("FACEAPI_MAX_CONCURRENT_IMAGES", int, _positive,
                                   "Images decoded and analysed at once per worker; more requests wait. Bounds memory per worker."),
    "store_path": _Spec("FACEAPI_STORE_PATH", str, lambda v: None if v else "must not be empty",
                        "File of the pickle store (its directory is created; a `.bak` and a `.lock` sit beside it)."),
    "database_url": _Spec("DATABASE_URL", str, _database_url,
                          "PostgreSQL URL (`postgresql://...`); when set, the store is PostgreSQL instead of the pickle file."),
    "tolerance": _Spec("FACEAPI_TOLERANCE", float, _tolerance,
                       "Largest face distance that still counts as the same person; lower is stricter. Per request: `tolerance`."),
    "upload_limit_bytes": _Spec("FACEAPI_UPLOAD_LIMIT_BYTES", int, _positive,
                                "Largest request body; a bigger one gets 413 before it is read."),
    "request_timeout_s": _Spec("FACEAPI_REQUEST_TIMEOUT_S", float, _seconds,
                               "Seconds a client has to send a whole request, headers and body; a slower one gets 408 and none of it is processed. Until then it holds no thread."),
    "max_image_pixels": _Spec("FACEAPI_MAX_IMAGE_PIXELS", int, _positive,
                              "Largest image (width x height) accepted; a bigger one gets 413 before its pixels are decoded."),
    "max_full_decode_pixels": _Spec("FACEAPI_MAX_FULL_DECODE_PIXELS", int, _positive,
                                    "Largest PNG, WebP, TIFF or GIF (width x height): unlike JPEG they are decoded at full size, about 4 bytes a pixel."),
    "detect_side_px": _Spec("FACEAPI_DETECT_SIDE_PX", int, _detect_side,
                            "When a request gives no `min_face_px`, the detector scans at most this longest side: on larger photos the smallest face searched grows with the photo (at 1280, 72/1280 of its longest side: 225 px on a 4000x3000 photo). 0: no such bound."),
    "min_face_px": _Spec("FACEAPI_MIN_FACE_PX", int, _positive,
                         "Smallest face searched when a request gives no `min_face_px`, in pixels of the uploaded image (bounded by `FACEAPI_DETECT_SIDE_PX`)."),
    "max_scan_pixels": _Spec("FACEAPI_MAX_SCAN_PIXELS", int, _positive,
                             "Most pixels one detection may scan; time and memory grow with it. A request asking for smaller faces than this allows is scanned at this size and its answer says `limited`."),
    "encode_side_px": _Spec("FACEAPI_ENCODE_SIDE_PX", int, _min_side,
                            "Longest side of the copy faces are encoded from (at most the uploaded size; a JPEG's draft decode up to 30% longer is used as it is)."),
    "api_key_digests": _Spec("API_KEYS", _api_key_digests, _any,
                             "Comma-separated API keys, or `sha256:<hex>` of each; when set, every endpoint but `/health`, `/ready`, `/openapi.json` and `/docs` needs one (`X-API-Key` or `Authorization: Bearer`). Unset: open, with a warning at start-up.", secret=True),
    "cors_origins": _Spec("FACEAPI_CORS_ORIGINS", _origins, _any,
                          "Comma-separated origins allowed by CORS; `*` allows any."),
    "log_level": _Spec("FACEAPI_LOG_LEVEL", str.lower, _log_level,
                       "Logging level of the service and gunicorn."),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The service's configuration, frozen after start-up. Field docs: see `_SPECS`."""

    port: int = 8000
    workers: int = dataclasses.field(default_factory=default_workers)
    threads: int = 4
    max_concurrent_images: int = 1
    store_path: str = "data/faces.pkl"
    database_url: str = ""
    tolerance: float = 0.6
    upload_limit_bytes: int = 10 * 1024 * 1024
    request_timeout_s: float = 60.0
    max_image_pixels: int = 50_000_000
    max_full_decode_pixels: int = 4_000_000
    detect_side_px: int = 1280
    min_face_px: int = 36
    max_scan_pixels: int = 3_000_000
    encode_side_px: int = 1600
    api_key_digests: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ("*",)
    log_level: str = "info"

    @property
    def store_location(self) -> str:
        """Where enrollments live: the database when configured, else the pickle file."""
        return self.database_url or self.store_path

    def __post_init__(self) -> None:
        problems = self._range_problems(vars(self))
        if problems:
            raise ConfigError(_format_problems(problems))

    @staticmethod
    def _range_problems(values: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> list[str]:
        """One line per value in ``values`` that its setting's check refuses, quoting ``raw`` text if given."""
        problems = []
        for name, value in values.items():
            spec = _SPECS[name]
            problem = spec.check(value)
            if problem:
                problems.append(f"{spec.env}={spec.shown(raw[spec.env] if raw else value)}: {problem}")
        return problems

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `environ` (default: `os.environ`); unset means the default.

        :raises ConfigError: naming every variable that does not parse or is out of range, all at once.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems = []
        for name, spec in _SPECS.items():
            raw = environ.get(spec.env)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = spec.parse(raw.strip())
            except ValueError:
                problems.append(f"{spec.env}={spec.shown(raw)}: not a valid {spec.parse.__name__}")
        problems += cls._range_problems(values, environ)
        if problems:
            raise ConfigError(_format_problems(problems))
        return cls(**values)


def _format_problems(problems: list[str]) -> str:
    return "invalid configuration:\n  " + "\n  ".join(problems)


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for each setting, in README order."""
    defaults = Settings()
    rows = []
    for name, spec in _SPECS.items():
        default = getattr(defaults, name)
        if name == "workers":
            default = "cores, memory / 128 MiB"
        elif name in ("database_url", "api_key_digests"):
            default = "unset"
        elif isinstance(default, tuple):
            default = ",".join(default)
        rows.append((spec.env, str(default), spec.doc))
    return rows
