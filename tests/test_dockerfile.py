"""deploy/Dockerfile: linted by hadolint and parsed for its shape; tests/test_container.py builds and runs it."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from dockerfile_parse import DockerfileParser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _stages() -> list[list[dict]]:
    """The Dockerfile's instructions, one list per stage."""
    stages: list[list[dict]] = []
    for instruction in DockerfileParser(str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _values(stage: list[dict], name: str) -> list[str]:
    return [instruction["value"] for instruction in stage if instruction["instruction"] == name]


def test_hadolint_passes() -> None:
    hadolint = pathlib.Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shape() -> None:
    build, runtime = _stages()
    assert all("slim" in _values(stage, "FROM")[0] or "${PYTHON_IMAGE}" in _values(stage, "FROM")[0]
               for stage in (build, runtime))
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    install = [run for run in _values(build, "RUN") if "pip install" in run]
    assert install and all("--mount=type=cache,target=/root/.cache/pip" in run for run in install)
    # No compiler anywhere: nothing is installed with apt, and the runtime only copies the virtualenv.
    assert not any(word in text for word in ("apt-get", "build-essential", "gcc", "g++", "cmake"))
    [user] = _values(runtime, "USER")
    assert user not in ("root", "0")
    [healthcheck] = _values(runtime, "HEALTHCHECK")
    assert "/health" in healthcheck
    procfile = (ROOT / "Procfile").read_text().split(":", 1)[1].split()
    assert _values(runtime, "CMD") == [str(procfile).replace("'", '"')]


def test_dependencies_come_before_the_code() -> None:
    """The layer order that caches: the build stage never sees the code, and in the runtime stage the code
    is copied after the virtualenv, with nothing run after it, so a code change rebuilds only that layer."""
    build, runtime = _stages()
    assert not any("backend" in value for value in _values(build, "COPY"))
    steps = [(instruction["instruction"], instruction["value"]) for instruction in runtime]
    venv = steps.index(("COPY", "--from=build /opt/venv /opt/venv"))
    code = steps.index(("COPY", "backend/ backend/"))
    assert venv < code and not any(name in ("RUN", "COPY", "ADD") for name, _ in steps[code + 1:])
    # The dependencies' RUN reads requirements.txt without its "-e ." line (this project, installed after).
    [dependencies] = [run for run in _values(build, "RUN") if "requirements.txt" in run]
    assert "grep -v '^-e '" in dependencies and "-r /tmp/dependencies.txt" in dependencies
    assert (ROOT / "requirements.txt").read_text().splitlines()[-1] == "-e ."
