"""The container image of deploy/Dockerfile, built by scripts/build-image and run here with buildah.

buildah runs a container with chroot isolation: no daemon and no OCI runtime, the host's network, and the
image's user, environment and working directory. Each test starts the image's own command, as
`docker run` would, with /data bound to a directory of the test.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import _server_from_scripts
from tests.scenario import enroll
from tests.scenario import names
from tests.scenario import recognize
from tests.servers import HttpClient
from tests.servers import free_port

_SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"


@pytest.fixture(scope="session")
def image() -> str:
    """The image scripts/test built (scripts/build-image); never skipped: a failed build fails the run."""
    return _server_from_scripts("TEST_IMAGE", "buildah's build of deploy/Dockerfile")


@pytest.fixture(scope="session")
def image_config(image: str) -> dict:
    inspected = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image], check=True,
                                          capture_output=True, text=True).stdout)
    return inspected["Docker"]["config"]


class Container:
    """A container of the image running its own command (the CMD), stopped and removed on exit."""

    def __init__(self, image: str, config: dict, data: pathlib.Path, log: pathlib.Path, **env: str) -> None:
        self.image, self.config, self.data, self.log_path = image, config, data, log
        self.port = free_port()
        self.env = {"PORT": str(self.port), **env}
        self.name = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Container:
        self.name = subprocess.run(["buildah", "from", "--quiet", "--pull-never", self.image], check=True,
                                   capture_output=True, text=True).stdout.strip()
        # buildah 1.28 binds an anonymous volume over the image's VOLUME even where --volume names that path
        # (docker and podman bind the named one): this container forgets the declaration, the image keeps it.
        for volume in self.config.get("Volumes") or {}:
            subprocess.run(["buildah", "config", "--volume", f"{volume}-", self.name], check=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self._run(*self.config["Cmd"]), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                if HttpClient(self.port).get("/ready").status_code == 200:
                    return self
            except OSError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.3)

    def __exit__(self, *exc_info: object) -> None:
        """Stop as ``docker stop`` does: SIGTERM to the image's command (gunicorn's master, which stops its
        workers and cleans up after itself), then SIGKILL if it is still there after 30 s."""
        if self.process is not None and self.process.poll() is None:
            master = self.master_pid()
            try:
                os.kill(master, signal.SIGTERM)
                self.process.wait(30)  # buildah run ends with its command
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        subprocess.run(["buildah", "rm", self.name], capture_output=True)

    def master_pid(self) -> int:
        """The image's command as the host sees it (chroot isolation shares the process table): the first
        process under ``buildah run`` that is gunicorn (faceapi.serve execs it)."""
        parents = {}
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        found = [self.process.pid]
        for pid in found:  # breadth first: the master comes before its workers
            for child in sorted(child for child, parent in parents.items() if parent == pid):
                try:
                    if b"gunicorn" in pathlib.Path(f"/proc/{child}/cmdline").read_bytes():
                        return child
                except OSError:
                    continue
                found.append(child)
        raise AssertionError("no gunicorn under buildah run")

    def execute(self, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in this container, beside its server (as ``docker exec`` would)."""
        return subprocess.run(self._run(*command, **env), capture_output=True, text=True, timeout=60)

    def _run(self, *command: str, **env: str) -> list[str]:
        settings = [f"--env={key}={value}" for key, value in {**self.env, **env}.items()]
        return ["buildah", "run", "--isolation", "chroot", "--network", "host", f"--volume={self.data}:/data",
                *settings, self.name, "--", *command]

    @property
    def client(self) -> HttpClient:
        return HttpClient(self.port)


@pytest.fixture
def data(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory for the image's /data volume, writable by the image's user only, as a fresh volume is."""
    directory = tmp_path / "data"
    directory.mkdir()
    os.chown(directory, 10001, 10001)
    directory.chmod(0o700)
    return directory


@pytest.fixture
def start(image: str, image_config: dict, tmp_path: pathlib.Path) -> Iterator:
    containers: list[Container] = []

    def run(data: pathlib.Path, **env: str) -> Container:
        container = Container(image, image_config, data, tmp_path / f"container{len(containers)}.log", **env)
        containers.append(container)
        return container.__enter__()

    yield run
    for container in containers:
        container.__exit__(None, None, None)


def test_it_answers_health_and_its_healthcheck_passes(start, data: pathlib.Path, image_config: dict) -> None:
    container = start(data)
    assert container.client.get("/health").json == {"status": "ok"}
    probe = image_config["Healthcheck"]["Test"]
    assert probe[0] == "CMD"
    passed = container.execute(*probe[1:])
    assert passed.returncode == 0, passed.stderr
    failed = container.execute(*probe[1:], PORT=str(free_port()))  # nothing listens there
    assert failed.returncode != 0


def test_it_runs_as_an_unprivileged_user(start, data: pathlib.Path, image_config: dict) -> None:
    assert image_config["User"] not in ("", "0", "root")
    container = start(data)
    assert container.execute("id", "-u").stdout.strip() == "10001"
    assert enroll(container.client, "obama", "obama.jpg").status_code == 201
    written = list(data.iterdir())
    assert written and all(path.stat().st_uid == 10001 for path in written)  # the server wrote as that user


def test_enrollments_outlive_the_container(start, data: pathlib.Path) -> None:
    first = start(data)
    assert enroll(first.client, "obama", "obama.jpg").status_code == 201
    assert names(recognize(first.client, "tests/test_images/obama2.jpg")) == ["obama"]
    assert names(recognize(first.client, "tests/test_images/biden.jpg")) == [None]
    master = first.master_pid()
    first.__exit__(None, None, None)
    assert first.process.returncode == 0  # it stopped on SIGTERM, as under docker stop
    # and cleaned up: its metrics directory (in the host's /dev/shm, which chroot isolation shares) is gone
    assert not list(pathlib.Path("/dev/shm").glob(f"faceapi-metrics-{master}-*"))
    second = start(data)  # a new container on the same volume
    assert names(recognize(second.client, "examples/two_people.jpg")) == [None, "obama"]
    assert second.client.get("/people").json["people"] == [{"name": "obama", "face_count": 1}]


def test_with_database_url_it_uses_postgresql(start, data: pathlib.Path, pg_url: str) -> None:
    container = start(data, DATABASE_URL=pg_url)
    assert enroll(container.client, "biden", "biden.jpg").status_code == 201
    assert names(recognize(container.client, "examples/two_people.jpg")) == [None, "biden"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT name FROM people").fetchall() == [("biden",)]
    assert not list(data.iterdir())  # nothing went to the volume


def test_the_image_holds_what_the_service_loads_and_not_the_rest(start, data: pathlib.Path) -> None:
    container = start(data)
    listing = container.execute("ls", f"{_SITE_PACKAGES}/face_recognition_models/models").stdout.split()
    assert sorted(listing) == ["dlib_face_recognition_resnet_model_v1.dat", "mmod_human_face_detector.dat",
                               "shape_predictor_5_face_landmarks.dat"]
    found = container.execute("find", _SITE_PACKAGES, "-name", "tests", "-o", "-name", "pip", "-o",
                              "-name", "*.pyc", "-o", "-name", "setuptools")
    assert found.returncode == 0 and found.stdout == ""
    assert container.execute("faceapi", "--help").returncode == 0  # the command, from the editable install
    assert container.client.get("/openapi.json").json["info"]["title"] == "faceapi"
