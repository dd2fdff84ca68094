"""Settings: parsed and validated once, documented in README."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from faceapi.config import ConfigError
from faceapi.config import Settings
from faceapi.config import describe_settings
from tests.servers import ROOT
from tests.servers import HttpClient
from tests.servers import free_port


def test_defaults_and_overrides() -> None:
    settings = Settings.from_env({"PORT": "9000", "FACEAPI_TOLERANCE": "0.5", "FACEAPI_CORS_ORIGINS": "https://a, https://b",
                                  "FACEAPI_DETECT_SIDE_PX": "0", "WEB_CONCURRENCY": ""})
    assert settings.port == 9000 and settings.tolerance == 0.5
    assert settings.cors_origins == ("https://a", "https://b")
    assert settings.detect_side_px == 0
    assert settings.workers >= 1 and Settings.from_env({}).tolerance is None  # unset: the open-set rule
    assert Settings.from_env({}).false_match_rate == 0.01


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PORT": "eighty", "FACEAPI_TOLERANCE": "1.5", "WEB_CONCURRENCY": "0"})
    message = str(caught.value)
    assert "PORT='eighty'" in message
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"FACEAPI_TOLERANCE": "1.5", "WEB_CONCURRENCY": "0", "FACEAPI_DETECT_SIDE_PX": "20"})
    message = str(caught.value)
    assert "FACEAPI_TOLERANCE" in message and "WEB_CONCURRENCY" in message and "FACEAPI_DETECT_SIDE_PX" in message


def _start(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a start command with only ``env`` set, as a newcomer's shell would; stdout and stderr together."""
    return subprocess.run(command, cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


def test_gunicorn_names_every_bad_variable_without_a_traceback() -> None:
    result = _start([f"{sys.prefix}/bin/gunicorn", "--config", "gunicorn.conf.py"],
                    FACEAPI_TOLERANCE="2", PORT="abc", FACEAPI_LOG_LEVEL="loud")
    assert result.returncode != 0
    assert "FACEAPI_TOLERANCE='2'" in result.stdout and "PORT='abc'" in result.stdout, result.stdout
    assert "FACEAPI_LOG_LEVEL='loud'" in result.stdout
    assert "Traceback" not in result.stdout and "Failed to read config" not in result.stdout, result.stdout


def test_start_command_also_checks_what_gunicorn_reads_itself() -> None:
    """gunicorn parses WEB_CONCURRENCY on import, before any config file; the Procfile's launcher checks it first."""
    result = _start([sys.executable, "-m", "faceapi.serve"], WEB_CONCURRENCY="x", FACEAPI_TOLERANCE="nan")
    assert result.returncode == 2
    assert "WEB_CONCURRENCY='x'" in result.stdout and "FACEAPI_TOLERANCE='nan'" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout
    assert (ROOT / "Procfile").read_text().strip() == "web: python -m faceapi.serve"


@pytest.mark.parametrize("command", [[f"{sys.prefix}/bin/gunicorn", "--config", "gunicorn.conf.py"],
                                     [sys.executable, "-m", "faceapi.serve"]], ids=["gunicorn", "serve"])
def test_a_wrong_database_url_is_named_without_its_password(command: list[str]) -> None:
    result = _start(command, DATABASE_URL="mysql://faceapi:s3cret-pw@db.example:3306/faces")
    assert result.returncode != 0
    assert "DATABASE_URL='mysql://faceapi:***@db.example:3306/faces'" in result.stdout, result.stdout
    assert "s3cret-pw" not in result.stdout


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable, default, _doc in describe_settings():
        assert f"| `{variable}` | `{default}` |" in readme, variable


def _imports(modules: str, name: str) -> bool:
    code = f"import sys; import {modules}; print({name!r} in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "backend", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_core_modules_do_not_import_flask() -> None:
    assert not _imports("faceapi, faceapi.config, faceapi.engine, faceapi.imaging, faceapi.matching, "
                        "faceapi.pipeline, faceapi.services, faceapi.store.pickle_file", "flask")


def test_moving_data_between_stores_loads_no_model() -> None:
    """faceapi transfer names the models by their files' hashes; it needs neither dlib nor Flask."""
    assert not _imports("faceapi.cli, faceapi.transfer", "dlib")
    assert not _imports("faceapi.transfer", "flask")


def test_a_shared_virtualenv_serves_the_checkout_it_is_started_from(tmp_path: pathlib.Path) -> None:
    """FACEAPI_VENV shared by two checkouts: each one's start script serves its own code, never the other's."""
    second = tmp_path / "second"
    for name in ("backend", "scripts"):
        shutil.copytree(ROOT / name, second / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("gunicorn.conf.py", "pyproject.toml", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, second / name)
    marker = "<!-- served from the second checkout -->"
    demo = second / "backend" / "faceapi" / "static" / "demo.html"
    demo.write_text(demo.read_text() + marker)
    # Started by hand in the second checkout, this virtualenv's package would be the first one's: refused.
    refused = subprocess.run([sys.executable, "-m", "faceapi.serve", "--check-config"], cwd=second / "scripts",
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and f"checkout {second}" in refused.stderr and str(ROOT) in refused.stderr
    # The requirements stamp stands for this virtualenv (scripts/test installed them all), so nothing is installed.
    requirements = b"".join(path.read_bytes() for path in sorted(ROOT.glob("requirements*.txt")))
    (pathlib.Path(sys.prefix) / ".requirements-requirements.txt.sha256").write_text(
        hashlib.sha256(requirements).hexdigest() + "\n")
    port = free_port()
    env = {**os.environ, "FACEAPI_VENV": sys.prefix, "PORT": str(port), "WEB_CONCURRENCY": "1",
           "FACEAPI_STORE_PATH": str(tmp_path / "faces.pkl")}
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen([str(second / "scripts" / "serve")], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                page = HttpClient(port).get("/")
                if page.status_code == 200:
                    break
            time.sleep(0.2)
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        assert marker in page.body.decode()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
