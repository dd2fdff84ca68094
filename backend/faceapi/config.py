"""Settings: every knob of the service, declared once, read from the environment once.

Each setting names its environment variable, its default, how it is parsed and
checked, and one sentence for the README. `Settings.from_env` collects every bad
variable into one `ConfigError`, so a misconfigured deploy fails at start-up,
before fork, with a message that names all the mistakes at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from faceapi.memory import MMAP_THRESHOLD_BYTES
from faceapi.scanning import DETECTORS
from faceapi.scanning import YUNET_MIN_CONFIDENCE
from faceapi.scopes import ApiKey
from faceapi.scopes import KeySyntaxError
from faceapi.scopes import parse_api_keys


class ConfigError(ValueError):
    """One or more environment variables are invalid; the message names each."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How one setting is read: its variable, parser and check, and its README line."""

    env: str
    parse: Callable[[str], Any]
    kind: str  # what a value must be, for "not a valid ..." messages
    check: Callable[[Any], str | None]
    doc: str
    secret: bool = False  # never echoed in error messages
    readme_default: str | None = None  # the default as README states it, when not the value itself
    redact: Callable[[str], str] | None = None  # the value with its secret part hidden, for error messages

    def shown(self, value: Any) -> str:
        """``value`` as an error message may quote it."""
        if self.secret:
            return "<hidden>"
        return repr(self.redact(value) if self.redact and isinstance(value, str) else value)


def _setting(env: str, default: Any, parse: Callable[[str], Any], kind: str, doc: str,
             check: Callable[[Any], str | None] | None = None, **spec: Any) -> Any:
    """A `Settings` field: its default (a callable: computed at start-up) and how the environment sets it."""
    metadata = {"spec": _Spec(env, parse, kind, check or _any, doc, **spec)}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _seconds(value: float) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a number of seconds greater than 0"


def _tolerance(value: float | None) -> str | None:
    if value is None or math.isfinite(value) and 0 < value <= 1:
        return None
    return "must be a number in (0, 1]"


def _rate(value: float) -> str | None:
    return None if math.isfinite(value) and 0 < value < 1 else "must be a number in (0, 1)"


def _positive_or_unset(value: int | None) -> str | None:
    return None if value is None or value > 0 else "must be greater than 0"


def _min_side(value: int) -> str | None:
    return None if value >= 80 else "must be at least 80 (dlib's detection window)"


def _detect_side(value: int | None) -> str | None:
    return None if value is None or value == 0 else _min_side(value)


# URL schemes that select the PostgreSQL store (App Platform binds `postgresql://`; Heroku-style is `postgres://`).
POSTGRES_URL_SCHEMES = ("postgres://", "postgresql://")


def redacted_url(url: str) -> str:
    """``url`` with the password of its user part, if any, replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def _database_url(value: str) -> str | None:
    if value == "" or value.startswith(POSTGRES_URL_SCHEMES):
        return None
    return "must start with postgresql:// (or be unset for the pickle store)"


def _api_keys(raw: str) -> tuple[ApiKey, ...]:
    """Comma-separated key entries (`faceapi.scopes`)."""
    return parse_api_keys(raw.split(","))


def _api_keys_file(path: str) -> tuple[ApiKey, ...]:
    """Key entries, one per line of the file at ``path``; ``#`` starts a comment."""
    try:
        with open(path, encoding="utf-8") as key_file:
            lines = [line.partition("#")[0] for line in key_file]
    except (OSError, UnicodeDecodeError) as exc:
        raise KeySyntaxError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_api_keys(lines, "line")


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """The service's configuration, frozen after start-up: each field declared once, in README order."""

    port: int = _setting("PORT", 8000, int, "int", "TCP port gunicorn listens on (on all interfaces); App Platform sets it.",
                         lambda v: None if 0 < v < 65536 else "must be a TCP port (1-65535)")
    workers: int = _setting("WEB_CONCURRENCY", lambda: default_workers(), int, "int",
                            "gunicorn worker processes. Default: one per core, at most one per 128 MiB of memory.",
                            _positive, readme_default="cores, memory / 128 MiB")
    threads: int = _setting("FACEAPI_THREADS", 4, int, "int",
                            "Threads per worker. They overlap uploads, JSON and store access; detection and encoding release the GIL, so images in different slots are analysed in parallel.",
                            _positive)
    max_concurrent_images: int = _setting("FACEAPI_MAX_CONCURRENT_IMAGES", 1, int, "int",
                                          "Images decoded and analysed at once per worker; more requests wait. Bounds memory per worker.",
                                          _positive)
    store_path: str = _setting("FACEAPI_STORE_PATH", "data/faces.pkl", str, "path",
                               "Snapshot file of the pickle store; beside it, in its directory (created if missing), sit its journal (`.journal`), a matrix file per collection (`.<id>.f32`) and its lock (`.lock`).",
                               lambda v: None if v else "must not be empty")
    database_url: str = _setting("DATABASE_URL", "", str, "URL",
                                 "PostgreSQL URL (`postgresql://...`); when set, the store is PostgreSQL instead of the pickle file.",
                                 _database_url, readme_default="unset", redact=redacted_url)
    pgvector: str = _setting("FACEAPI_PGVECTOR", "auto", str.lower, "mode",
                             "With `DATABASE_URL`: `auto` matches in PostgreSQL when the server offers the `vector` extension (pgvector; it is created, and each face indexed), else in each worker; `on` requires it (start-up fails without); `off` always matches in each worker.",
                             lambda v: None if v in ("auto", "on", "off") else "must be auto, on or off")
    false_match_rate: float = _setting("FACEAPI_FALSE_MATCH_RATE", 0.01, float, "float",
                                       "The share of strangers you accept being given a name: a face is named only when, in a gallery the size of its collection, at most this share of strangers would be named on evidence as strong (see \"How sure is a name?\"). Per request: `false_match_rate`.",
                                       _rate)
    tolerance: float | None = _setting("FACEAPI_TOLERANCE", None, float, "float",
                                       "When set: the plain rule instead, for every request: a face is named when its nearest enrolled face is within this distance, whatever the gallery's size (its strangers named per gallery size are in \"How sure is a name?\"). Per request: `tolerance`. `/verify` uses it too, else 0.6.",
                                       _tolerance, readme_default="unset")
    upload_limit_bytes: int = _setting("FACEAPI_UPLOAD_LIMIT_BYTES", 10 * 1024 * 1024, int, "int",
                                       "Largest request body; a bigger one gets 413 before it is read.", _positive)
    request_timeout_s: float = _setting("FACEAPI_REQUEST_TIMEOUT_S", 60.0, float, "float",
                                        "Seconds a client has to send a whole request, headers and body; a slower one gets 408 and none of it is processed. Until then it holds no thread.",
                                        _seconds)
    max_image_pixels: int = _setting("FACEAPI_MAX_IMAGE_PIXELS", 50_000_000, int, "int",
                                     "Largest image (width x height) accepted; a bigger one gets 413 before its pixels are decoded.",
                                     _positive)
    max_full_decode_pixels: int = _setting("FACEAPI_MAX_FULL_DECODE_PIXELS", 16_000_000, int, "int",
                                           "Largest AVIF, WebP, PNG, TIFF or GIF, or HEIC stored as one picture (width x height): unlike JPEG and a phone's tiled HEIC they are decoded at full size, 3 to 5 bytes a pixel (119 MB for a 24 MP AVIF), alone on the host above 4 million pixels. The default keeps two workers in 256 MB; 25000000 takes 24 MP ones, with 384 MB or more.",
                                           _positive)
    detector: str = _setting("FACEAPI_DETECTOR", "yunet", str.lower, "detector",
                             "Face detector when a request gives no `detector`: `yunet` (libfacedetection's YuNet: small, turned and partly hidden faces too, at about 0.1 s a megapixel), `hog` (dlib's frontal HOG) or `cnn` (dlib's CNN, about 20 times YuNet's time). README, \"Detectors\".",
                             lambda v: None if v in DETECTORS else f"must be one of {', '.join(DETECTORS)}")
    detect_side_px: int | None = _setting("FACEAPI_DETECT_SIDE_PX", None, int, "int",
                                          "When a request gives no `min_face_px`, photos larger than `FACEAPI_FULL_SEARCH_PIXELS` are scanned at most at this longest side: their smallest face searched grows with the photo. Unset: each detector's own, YuNet 896 (20/896 of the longest side: 43 px on a 1920x1080 photo, 90 px on 4000x3000), HOG and the CNN 1280 (72/1280: 108 px, 225 px). 0: no such bound.",
                                          _detect_side, readme_default="unset")
    full_search_pixels: int = _setting("FACEAPI_FULL_SEARCH_PIXELS", 2_000_000, int, "int",
                                       "When a request gives no `min_face_px`, photos of at most this many pixels are searched from `FACEAPI_MIN_FACE_PX` (an 800x600 photo from 20 px with YuNet); larger ones as `FACEAPI_DETECT_SIDE_PX` says.",
                                       _non_negative)
    min_face_px: int | None = _setting("FACEAPI_MIN_FACE_PX", None, int, "int",
                                       "Smallest face searched when a request gives no `min_face_px`, in pixels of the uploaded image (on photos up to `FACEAPI_FULL_SEARCH_PIXELS`; larger ones as `FACEAPI_DETECT_SIDE_PX` says). Unset: each detector's own, YuNet 20 (the photo at its own size), HOG and the CNN 36 (face_recognition's HOG scan).",
                                       _positive_or_unset, readme_default="unset")
    min_detection_confidence: float = _setting("FACEAPI_MIN_DETECTION_CONFIDENCE", YUNET_MIN_CONFIDENCE, float, "float",
                                               "YuNet's score (0 to 1) a face needs to be reported; each face's `confidence` is that score. The default is measured on WIDER FACE photos (docs/DETECTORS.md): lower finds a few more small and hidden faces and more things that are not faces.",
                                               _rate)
    max_scan_pixels: int = _setting("FACEAPI_MAX_SCAN_PIXELS", 12_000_000, int, "int",
                                    "Most pixels one YuNet or HOG detection may scan: it bounds the CPU a request can take (about 1.5 s at the default, enough to search a 12 MP photo from 20 px with YuNet, from 72 px with HOG; memory stays that of one band: 1 MP for YuNet, 4 MP for HOG). A request asking for smaller faces than this allows is scanned at this size and its answer says `limited`.",
                                    _positive)
    cnn_max_scan_pixels: int = _setting("FACEAPI_CNN_MAX_SCAN_PIXELS", 2_000_000, int, "int",
                                        "`FACEAPI_MAX_SCAN_PIXELS` for the CNN detector, which costs about 5 times as much per pixel and runs one detection at a time per host, on two threads: at the default about 1 s, and two workers fit in 256 MB. 3000000 lets a 1024x683 photo be searched from 40 px (about 1.3 s; 30 MB more).",
                                        _positive)
    encode_side_px: int = _setting("FACEAPI_ENCODE_SIDE_PX", 1600, int, "int",
                                   "Longest side of the copy faces are encoded from (at most the uploaded size; a JPEG's draft decode up to 30% longer is used as it is).",
                                   _min_side)
    api_keys: tuple[ApiKey, ...] = _setting("API_KEYS", (), _api_keys, "list of keys",
                                         "Comma-separated API keys, each `<key or sha256:hex> [read-only] [collections=a|b]` (README, \"API keys\"); when set, every endpoint but `/health`, `/ready`, `/openapi.json`, `/docs` and the demo page needs one (`X-API-Key` or `Authorization: Bearer`). Unset, and no key file: open, with a warning at start-up.",
                                         secret=True, readme_default="unset")
    api_keys_file: tuple[ApiKey, ...] = _setting("FACEAPI_API_KEYS_FILE", (), _api_keys_file, "key file",
                                                 "A file of more keys, one entry per line as in `API_KEYS` (`#` starts a comment), read at start-up: for many devices, or keys kept in a mounted secret.",
                                                 readme_default="unset")
    cors_origins: tuple[str, ...] = _setting("FACEAPI_CORS_ORIGINS", ("*",), _origins, "list of origins",
                                             "Comma-separated origins allowed by CORS; `*` allows any.")
    log_level: str = _setting("FACEAPI_LOG_LEVEL", "info", str.lower, "level", "Logging level of the service and gunicorn.",
                              _log_level)
    malloc_mmap_threshold: int = _setting(
        "FACEAPI_MALLOC_MMAP_THRESHOLD", MMAP_THRESHOLD_BYTES, int, "int",
        "glibc malloc's mmap threshold in bytes, fixed in the master before fork: larger blocks are mapped afresh and go back to the system when freed. Higher keeps more memory under load and, measured on this service, is no faster (docs/BENCHMARKS.md); 0 leaves glibc's own, which adapts up to 32 MiB.",
        lambda v: None if 0 <= v <= 32 << 20 else "must be 0 to 33554432 (32 MiB)")

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        """Every configured key: `API_KEYS`'s, then the key file's."""
        return self.api_keys + self.api_keys_file

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
            spec = _specs()[name]
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
        for name, spec in _specs().items():
            raw = environ.get(spec.env)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = spec.parse(raw.strip())
            except KeySyntaxError as exc:  # says where, never quoting a key
                problems.append(f"{spec.env}={spec.shown(raw)}: not a valid {spec.kind}: {exc}")
            except ValueError:
                problems.append(f"{spec.env}={spec.shown(raw)}: not a valid {spec.kind}")
        problems += cls._range_problems(values, environ)
        if problems:
            raise ConfigError(_format_problems(problems))
        return cls(**values)


@functools.cache
def process_settings() -> Settings:
    """This process's settings, read from ``os.environ`` once: by gunicorn's config in the master,
    then by the app and the worker class, and inherited by forked workers.

    :raises ConfigError: as `Settings.from_env`.
    """
    return Settings.from_env()


def _format_problems(problems: list[str]) -> str:
    return "invalid configuration:\n  " + "\n  ".join(problems)


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for each setting, in README order."""
    defaults = Settings()
    rows = []
    for name, spec in _specs().items():
        default = getattr(defaults, name)
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((spec.env, spec.readme_default or shown, spec.doc))
    return rows


def _specs() -> dict[str, _Spec]:
    """Field name -> how to read it, in the order the fields are declared."""
    return {field.name: field.metadata["spec"] for field in dataclasses.fields(Settings)}
