"""README's API examples, run as they are written against a real gunicorn, in a folder of the labelled photos."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

from tests.servers import FACES

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRATCH = "/tmp/faceapi-try"  # README's scratch folder


def api_examples() -> str:
    """The shell block of README's "## API" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## API\n"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_every_api_example_works(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    """From the checkout, as README says: its first lines copy the photos into a scratch folder (here the
    test's own) and go there."""
    server = gunicorn_factory()
    scratch = tmp_path / "try"
    assert SCRATCH in api_examples()
    # Every curl fails the script on an HTTP error; the examples are meant to succeed, in order.
    script = "set -euo pipefail\n" + api_examples().replace("curl ", "curl -sS --fail-with-body ").replace(
        "localhost:8000", f"127.0.0.1:{server.port}").replace(SCRATCH, str(scratch))
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exported = (scratch / "export.json").read_text()
    assert '"format": "faceapi-export"' in exported and '"name": "biden"' in exported
    assert server.client().get("/people").json["people"] == [{"name": "biden", "face_count": 1}]


def test_every_endpoint_has_an_example() -> None:
    from faceapi.api.contract import openapi_document

    examples = api_examples()
    for path, item in openapi_document()["paths"].items():
        if path.startswith("/docs/"):
            continue  # the page's own assets
        pattern = re.escape(path).replace(r"\{name\}", "[^/ ']+").replace(r"\{face_id\}", r"[^/ '\"]+").replace(
            r"\{collection\}", "[A-Za-z0-9_.-]+")
        for method in item:
            flag = "" if method in ("get", "post") else f"-X {method.upper()} .*"
            assert re.search(f"curl {flag}.*localhost:8000{pattern}['\" \\n?]", examples + "\n"), (method, path)


def _keys_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Collections and API keys\n"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_key_examples_answer_as_written(gunicorn_factory, tmp_path: pathlib.Path) -> None:
    """README's block on scoped keys, against gunicorn started with the API_KEYS it exports: each curl gets
    the status written under it."""
    block = _keys_block()
    keys = re.search(r"^export API_KEYS='([^']+)'$", block, re.M).group(1)
    server = gunicorn_factory(API_KEYS=keys)
    for photo in ("tests/test_images/obama.jpg", "examples/two_people.jpg"):
        (tmp_path / pathlib.Path(photo).name).symlink_to(FACES / photo)
    lines = block.splitlines()
    checked = 0
    for index, line in enumerate(lines):
        if not line.startswith("curl "):
            continue
        expected = re.match(r"# (\d{3}) ", lines[index + 1]).group(1)
        command = line.replace("curl ", "curl -sS -o /dev/null -w '%{http_code}' ", 1).replace(
            "localhost:8000", f"127.0.0.1:{server.port}")
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.stdout == expected, (line, result.stdout, result.stderr)
        checked += 1
    assert checked >= 6
