"""deploy/Dockerfile: linted by hadolint, parsed for its shape, and its install and start steps run as
they are written, in a fresh virtualenv standing in for the image (no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request

from dockerfile_parse import DockerfileParser

from tests.scenario import enroll
from tests.servers import HttpClient
from tests.servers import free_port

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


def _env(stage: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in _values(stage, "ENV"):
        for pair in shlex.split(value.replace("\\\n", " ")):
            key, _, setting = pair.partition("=")
            env[key] = setting
    return env


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
    [install] = [run for run in _values(build, "RUN") if "pip install" in run]
    assert "--mount=type=cache,target=/root/.cache/pip" in install
    # No compiler anywhere: nothing is installed with apt, and the runtime only copies the virtualenv.
    assert not any(word in text for word in ("apt-get", "build-essential", "gcc", "g++", "cmake"))
    assert any(value.startswith("--from=build /opt/venv") for value in _values(runtime, "COPY"))
    [user] = _values(runtime, "USER")
    assert user not in ("root", "0")
    [healthcheck] = _values(runtime, "HEALTHCHECK")
    assert "/health" in healthcheck
    procfile = (ROOT / "Procfile").read_text().split(":", 1)[1].split()
    assert _values(runtime, "CMD") == [str(procfile).replace("'", '"')]
    assert "gunicorn.conf.py" in _values(runtime, "COPY")[1]


def test_install_and_start_as_the_image_does(tmp_path: pathlib.Path) -> None:
    """The build stage's commands into a fresh virtualenv, then the runtime's CMD and HEALTHCHECK."""
    build, runtime = _stages()
    app, venv, data = tmp_path / "app", tmp_path / "venv", tmp_path / "data"
    app.mkdir()
    data.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for copy in _values(build, "COPY") + _values(runtime, "COPY"):
        if copy.startswith("--"):
            continue
        *sources, _target = copy.split()
        for source in sources:
            source = source.rstrip("/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, app / source, ignore=ignore, dirs_exist_ok=True)
            else:
                shutil.copy(ROOT / source, app / source)

    def here(command: str) -> str:
        return command.replace("/opt/venv", str(venv)).replace("/data", str(data))

    for run in _values(build, "RUN"):
        command = " ".join(word for word in run.replace("\\\n", " ").split() if not word.startswith("--mount"))
        python = "python3.11" if shutil.which("python3.11") else sys.executable
        result = subprocess.run(here(command).replace("python -m venv", f"{python} -m venv"), shell=True, cwd=app,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    port = free_port()
    env = {**{key: here(value.replace("$PATH", os.environ["PATH"])) for key, value in _env(runtime).items()},
           "PORT": str(port), "HOME": str(tmp_path)}
    env = {**{key: value for key, value in os.environ.items() if key in ("LANG", "TMPDIR")}, **env}
    [cmd] = _values(runtime, "CMD")
    log = tmp_path / "server.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(json.loads(cmd), cwd=app, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
        [healthcheck] = _values(runtime, "HEALTHCHECK")
        probe = json.loads(healthcheck.split("CMD", 1)[1].strip())
        assert subprocess.run(probe, env=env, timeout=10).returncode == 0
        # The image's store path (/data, the volume) is where enrollments go.
        assert enroll(HttpClient(port), "obama", "obama.jpg").status_code == 201
        assert (data / "faces.pkl").is_file()
    finally:
        server.terminate()
        server.wait(30)
