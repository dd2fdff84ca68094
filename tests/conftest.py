"""Shared fixtures: the labelled photos, one engine per session, apps, and real gunicorn servers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from faceapi import create_app
from faceapi.config import Settings
from faceapi.engine import FaceEngine
from faceapi.pipeline import Pipeline
from tests.servers import FACES
from tests.servers import GunicornServer
from tests.servers import encode_form


def face_photo(relative: str) -> pathlib.Path:
    """A labelled photo from ../shared/faces (see its LABELS.md); never copied into the repo."""
    path = FACES / relative
    if not path.is_file():
        pytest.fail(f"missing test photo {path}: the tests need ../shared/faces beside the repository")
    return path


def test_images(name: str) -> pathlib.Path:
    return face_photo(f"tests/test_images/{name}")


test_images.__test__ = False  # a helper, not a test


# A model id for store tests that make up their encodings.
MODEL = "test-model"


def random_encodings(count: int, seed: int) -> np.ndarray:
    """``count`` made-up encodings, the same for the same ``seed``."""
    return np.random.default_rng(seed).normal(size=(count, 128)).astype(np.float32)


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    """The engine with the service's default detection settings, loaded once."""
    return FaceEngine.load()


@pytest.fixture(scope="session")
def pipeline(engine: FaceEngine) -> Pipeline:
    """The service's pipeline with its default settings, on the session's engine."""
    return Pipeline(engine, Settings(workers=1))


@pytest.fixture(autouse=True)
def _close_database_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the connection pools of every PostgreSQL store a test opened, when it ends: a pool left to the
    garbage collector may be collected on its own worker thread, which then cannot join itself."""
    from faceapi.store.postgres import PostgresStore

    opened: list[PostgresStore] = []
    real_init = PostgresStore.__init__

    def init(self: PostgresStore, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(PostgresStore, "__init__", init)
    yield
    for store in opened:
        store.close()


@pytest.fixture(scope="session")
def database_url() -> str:
    """The PostgreSQL server scripts/test provides. Missing, the run fails: a skipped backend is an untested one."""
    return _server_from_scripts("TEST_DATABASE_URL", "PostgreSQL")


@pytest.fixture(scope="session")
def pgvector_server_url() -> str:
    """The PostgreSQL server with pgvector that scripts/test starts (scripts/ensure-pgvector); never skipped."""
    return _server_from_scripts("TEST_PGVECTOR_URL", "pgvector")


def _server_from_scripts(variable: str, what: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.fail(f"{variable} is not set: run the tests with ./scripts/test, which starts {what}")
    return url


@pytest.fixture
def pg_url(database_url: str) -> Iterator[str]:
    """A URL whose connections see only a fresh schema of this test's own."""
    yield from _own_schema(database_url)


@pytest.fixture
def pgvector_url(pgvector_server_url: str) -> Iterator[str]:
    """As `pg_url`, on the server with pgvector (whose extension lives in ``public``, so that stays on the path)."""
    yield from _own_schema(pgvector_server_url, "%2Cpublic")


def _own_schema(server_url: str, also: str = "") -> Iterator[str]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in server_url else "?"
    yield f"{server_url}{separator}options=-csearch_path%3D{schema}{also}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that reach a store run on each backend, but those marked ``store_independent`` on the pickle file
    only: what they check (detection, validation, the contract) does not depend on where faces are kept."""
    if "store_location" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("store_independent") is not None
        metafunc.parametrize("store_location", ["pickle"] if one else ["pickle", "postgres", "pgvector"],
                             indirect=True)


@pytest.fixture
def store_location(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """Each store backend in turn: a pickle file path, a PostgreSQL URL (a server without pgvector: matching
    in the process), or the URL of a server with pgvector (matching in the database)."""
    if request.param == "pickle":
        return str(tmp_path / "store" / "faces.pkl")
    return request.getfixturevalue("pgvector_url" if request.param == "pgvector" else "pg_url")


@pytest.fixture
def settings(store_location: str) -> Settings:
    if store_location.startswith("postgresql://"):
        return Settings(database_url=store_location, workers=1)
    return Settings(store_path=store_location, workers=1)


@pytest.fixture
def app(settings: Settings, engine: FaceEngine):
    return create_app(settings, engine=engine)


class TestClient:
    """Flask's test client, but forms are encoded in memory as for the real server.

    (Werkzeug's own encoder spools large test bodies to a temporary file it never closes.)
    """

    __test__ = False

    def __init__(self, flask_client: Any) -> None:
        self._client = flask_client

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            data, kwargs["content_type"] = encode_form(data)
        return self._client.post(path, data=data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app.test_client())


def client_of(settings: Settings, engine: FaceEngine) -> TestClient:
    """A test client of a new app with ``settings``, on an engine already loaded."""
    return TestClient(create_app(settings, engine=engine).test_client())


@pytest.fixture
def make_client(settings: Settings, engine: FaceEngine) -> Callable[..., TestClient]:
    """``make_client(upload_limit_bytes=1000)``: a client of an app on this test's store, some settings changed."""
    return lambda **changes: client_of(dataclasses.replace(settings, **changes), engine)


@pytest.fixture
def gunicorn_factory(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Start real gunicorn servers; all are stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        def start(name: str = "server", **env: str) -> GunicornServer:
            env.setdefault("FACEAPI_STORE_PATH", str(tmp_path / "store" / "faces.pkl"))
            return stack.enter_context(GunicornServer(tmp_path / f"{name}.log", env))

        yield start
