"""Settings: parsed and validated once, documented in README."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceapi.config import ConfigError
from faceapi.config import Settings
from faceapi.config import describe_settings
from tests.servers import ROOT


def test_defaults_and_overrides() -> None:
    settings = Settings.from_env({"PORT": "9000", "FACEAPI_TOLERANCE": "0.5", "FACEAPI_CORS_ORIGINS": "https://a, https://b",
                                  "FACEAPI_DETECT_SIDE_PX": "0", "WEB_CONCURRENCY": ""})
    assert settings.port == 9000 and settings.tolerance == 0.5
    assert settings.cors_origins == ("https://a", "https://b")
    assert settings.detect_side_px == 0
    assert settings.workers >= 1 and Settings.from_env({}).tolerance == 0.6


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


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable, default, _doc in describe_settings():
        assert f"| `{variable}` | `{default}` |" in readme, variable


def test_core_modules_do_not_import_flask() -> None:
    code = ("import sys; import faceapi, faceapi.config, faceapi.engine, faceapi.imaging, faceapi.matching, "
            "faceapi.services, faceapi.store.pickle_file; print('flask' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "backend", capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
