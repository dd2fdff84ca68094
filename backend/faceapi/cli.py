"""``faceapi``: the command line for everyday work with a running service, local or deployed.

    faceapi enroll-dir DIR [--url URL] [--api-key KEY]   enroll a folder of one sub-folder per person
    faceapi export FILE [--url URL] [--api-key KEY]      save every enrollment (GET /export)
    faceapi import FILE [--mode merge|replace] [...]     load an export (POST /import)
    faceapi transfer SOURCE DESTINATION                  copy between stores directly (pickle file or postgresql://)

The service is reached over HTTP (``--url``, default ``$FACEAPI_URL`` or http://localhost:8000) with
``--api-key`` or ``$FACEAPI_API_KEY`` when it has keys. Each command works on one collection,
``--collection`` (default ``$FACEAPI_COLLECTION``, else the default collection); ``transfer`` copies
every collection unless given one. ``enroll-dir`` sends a person's images 4 to a request
(``--batch``; a refused request is sent again image by image), each tagged with ``external_id``
``<person>/<file>``, and first asks the service which of a person's files it already holds, so a second
run (after a failure, or with new photos) skips what is done, with no state file.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pathlib
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm
from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import MultiDict
from werkzeug.test import encode_multipart

from faceapi.scanning import DETECTORS
from faceapi.store import StoreError
from faceapi.transfer import transfer

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
DEFAULT_URL = "http://localhost:8000"
# Images per enrollment request: fewer round trips, and well under the service's 10 per request and its
# upload limit for phone photos (4 x 3 MB).
DEFAULT_BATCH = 4
_TIMEOUT_S = 120


class ServiceError(Exception):
    """The service answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Service:
    """A faceapi service at ``url``: the few calls the command line needs, in one collection."""

    def __init__(self, url: str, api_key: str | None, collection: str | None = None) -> None:
        base = url.rstrip("/")
        self.url = f"{base}/collections/{urllib.parse.quote(collection, safe='')}" if collection else base
        self.headers = {"X-API-Key": api_key} if api_key else {}

    def enrolled_external_ids(self, name: str) -> set[str]:
        """The external ids of person ``name``'s faces; empty for someone not enrolled."""
        try:
            person = self._call("GET", f"/people/{urllib.parse.quote(name, safe='')}")
        except ServiceError as error:
            if error.code == "unknown_person":
                return set()
            raise
        return {face["external_id"] for face in person["faces"] if face["external_id"]}

    def enroll(self, name: str, images: list[pathlib.Path], external_ids: list[str],
               detector: str | None = None) -> dict[str, Any]:
        """Enroll ``images`` (each with its external id) as ``name`` in one request: all or none."""
        with contextlib.ExitStack() as files:
            fields = MultiDict([("name", name)])
            for image, external_id in zip(images, external_ids, strict=True):
                fields.add("external_id", external_id)
                fields.add("image", FileStorage(files.enter_context(open(image, "rb")), filename=image.name))
            if detector is not None:
                fields.add("detector", detector)
            boundary, body = encode_multipart(fields)
        return self._call("POST", "/enroll", body, f"multipart/form-data; boundary={boundary}")

    def export(self, destination: pathlib.Path) -> None:
        """Save the export as ``destination``, which is replaced only once the whole file has arrived."""
        request = urllib.request.Request(self.url + "/export", headers=self.headers)
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            with self._open(request) as response, open(partial, "wb") as out, self._reading():
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                if response.length:  # fewer bytes than Content-Length said: http.client returns them quietly
                    raise http.client.IncompleteRead(b"", response.length)
            os.replace(partial, destination)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    def import_file(self, source: pathlib.Path, mode: str) -> dict[str, Any]:
        with open(source, "rb") as data:
            boundary, body = encode_multipart(MultiDict([("mode", mode),
                                                         ("file", FileStorage(data, filename=source.name))]))
        return self._call("POST", "/import", body, f"multipart/form-data; boundary={boundary}")

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str | None = None) -> dict[str, Any]:
        headers = {**self.headers, **({"Content-Type": content_type} if content_type else {})}
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        with self._open(request) as response, self._reading():
            return json.load(response)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A connection that drops while an answer is read is a `ServiceError`, not a traceback."""
        try:
            yield
        except (http.client.HTTPException, OSError) as error:
            raise ServiceError(f"the connection to {self.url} dropped before the whole answer arrived "
                               f"({type(error).__name__})") from None

    def _open(self, request: urllib.request.Request) -> Any:
        try:
            return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            try:
                detail = json.load(error)["error"]
            except (ValueError, KeyError, TypeError):
                detail = {"code": None, "message": error.reason}
            raise ServiceError(detail["message"], error.code, detail["code"]) from None
        except (urllib.error.URLError, OSError) as error:
            raise ServiceError(f"cannot reach {self.url}: {getattr(error, 'reason', error)}") from None


def enroll_dir(service: Service, folder: pathlib.Path, *, progress: bool = True,
               detector: str | None = None, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Enroll every image of ``folder/<person>/``; return counts and the refused images with their reasons.

    :param detector: ``yunet``, ``hog`` or ``cnn``; None: the service's default.
    :param batch: images of one person sent in one request (1 to 10). A request is all or none, so when
        one is refused its images are sent again one by one, to enroll the others and name the culprit.

    :raises ServiceError: the service is unreachable or refuses the key (nothing more can be done).
    """
    people = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    summary: dict[str, Any] = {"enrolled": 0, "skipped": 0, "refused": []}
    total = sum(len(_images(person.iterdir())) for person in people)
    with tqdm(total=total, unit="image", disable=not progress, file=sys.stderr) as bar:
        for person in people:
            done = service.enrolled_external_ids(person.name)
            pending = []
            for image in _images(person.iterdir()):
                if f"{person.name}/{image.name}" in done:
                    summary["skipped"] += 1
                    bar.update()
                else:
                    pending.append(image)
            for start in range(0, len(pending), batch):
                chunk = pending[start:start + batch]
                _enroll_chunk(service, person.name, chunk, detector, summary)
                bar.update(len(chunk))
    return summary


def _enroll_chunk(service: Service, name: str, images: list[pathlib.Path], detector: str | None,
                  summary: dict[str, Any]) -> None:
    external_ids = [f"{name}/{image.name}" for image in images]
    try:
        service.enroll(name, images, external_ids, detector)
    except ServiceError as error:
        if error.status is None or error.status in (401, 403) or error.status >= 500:
            raise  # the service, not the image: nothing more can be done
        if len(images) > 1:
            for image in images:
                _enroll_chunk(service, name, [image], detector, summary)
            return
        summary["refused"].append({"image": external_ids[0], "code": error.code, "message": str(error)})
        return
    summary["enrolled"] += len(images)


def _images(paths: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    return sorted(path for path in paths if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; exit status 0 on success, 1 when images were refused, 2 on errors."""
    parser = argparse.ArgumentParser(prog="faceapi", description=__doc__.splitlines()[0].strip("`: "))
    commands = parser.add_subparsers(dest="command", required=True)
    enroll = _with_service(commands.add_parser("enroll-dir", help="enroll a folder of one sub-folder per person"))
    enroll.add_argument("folder", type=pathlib.Path)
    enroll.add_argument("--quiet", action="store_true", help="no progress bar")
    enroll.add_argument("--detector", choices=DETECTORS,
                        help="yunet, hog or cnn (default: the service's FACEAPI_DETECTOR)")
    enroll.add_argument("--batch", type=int, choices=range(1, 11), default=DEFAULT_BATCH, metavar="1-10",
                        help="images of a person per request (default %(default)s)")
    export = _with_service(commands.add_parser("export", help="save every enrollment to a file"))
    export.add_argument("file", type=pathlib.Path)
    load = _with_service(commands.add_parser("import", help="load an export file"))
    load.add_argument("file", type=pathlib.Path)
    load.add_argument("--mode", choices=("merge", "replace"), default="merge")
    copy = commands.add_parser("transfer", help="copy every face between stores, without a service")
    copy.add_argument("source", help="pickle file path or postgresql:// URL to read")
    copy.add_argument("destination", help="pickle file path or postgresql:// URL to add to")
    copy.add_argument("--collection", help="copy this collection only (default: every collection)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ServiceError, StoreError, OSError) as error:
        print(f"faceapi {args.command}: {error}", file=sys.stderr)
        return 2


def _with_service(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--url", default=os.environ.get("FACEAPI_URL", DEFAULT_URL),
                        help="the service (default $FACEAPI_URL, else %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("FACEAPI_API_KEY"),
                        help="its API key (default $FACEAPI_API_KEY)")
    parser.add_argument("--collection", default=os.environ.get("FACEAPI_COLLECTION"),
                        help="the collection (default $FACEAPI_COLLECTION, else the default collection)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "transfer":
        read, added = transfer(args.source, args.destination, args.collection)
        print(f"read {read} faces, added {added} new ({read - added} already present)")
        return 0
    service = Service(args.url, args.api_key, args.collection)
    if args.command == "export":
        service.export(args.file)
        print(f"exported to {args.file}")
        return 0
    if args.command == "import":
        answer = service.import_file(args.file, args.mode)
        print(f"{answer['mode']}: {answer['faces']} faces of {answer['people']} people in the file, "
              f"{answer['added']} added")
        return 0
    if not args.folder.is_dir():
        raise ServiceError(f"no folder at {args.folder}")
    summary = enroll_dir(service, args.folder, progress=not args.quiet, detector=args.detector, batch=args.batch)
    print(f"enrolled {summary['enrolled']}, already enrolled {summary['skipped']}, refused {len(summary['refused'])}")
    for refusal in summary["refused"]:
        print(f"  refused {refusal['image']}: {refusal['code']}: {refusal['message']}")
    return 1 if summary["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
