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


def test_gunicorn_refuses_bad_config_before_fork() -> None:
    gunicorn = f"{sys.prefix}/bin/gunicorn"
    result = subprocess.run([gunicorn, "--check-config", "--config", "gunicorn.conf.py"], cwd=ROOT,
                            env={"FACEAPI_TOLERANCE": "nan", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0 and "FACEAPI_TOLERANCE" in result.stderr + result.stdout


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable, default, _doc in describe_settings():
        assert f"| `{variable}` | `{default}` |" in readme, variable


def test_core_modules_do_not_import_flask() -> None:
    code = ("import sys; import faceapi, faceapi.config, faceapi.engine, faceapi.imaging, faceapi.matching, "
            "faceapi.services, faceapi.store.pickle_file; print('flask' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "backend", capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
