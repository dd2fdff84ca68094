"""API keys: required everywhere but the probes, accepted as a header or a bearer token, compared as digests."""

from __future__ import annotations

import hashlib

import pytest

from faceapi import create_app
from faceapi.config import ConfigError
from faceapi.config import Settings
from tests.conftest import TestClient
from tests.conftest import test_images
from tests.servers import upload

PLAIN = "k-plain-0123456789"
HASHED = "k-hashed-abcdef"


@pytest.fixture
def locked(make_client) -> TestClient:
    digests = Settings.from_env({"API_KEYS": f"{PLAIN}, sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}"})
    return make_client(api_keys=digests.api_keys)


@pytest.mark.parametrize("path", ["/people", "/nowhere"])
def test_requests_without_a_key_are_refused(locked: TestClient, path: str) -> None:
    response = locked.get(path)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


@pytest.mark.store_independent
def test_probes_stay_open(locked: TestClient) -> None:
    assert locked.get("/health").status_code == 200
    assert locked.get("/ready").status_code == 200


@pytest.mark.parametrize("headers", [
    {"X-API-Key": PLAIN},
    {"Authorization": f"Bearer {PLAIN}"},
    {"X-API-Key": HASHED},
    {"Authorization": f"bearer {HASHED}"},
])
def test_valid_keys(locked: TestClient, headers: dict[str, str]) -> None:
    assert locked.get("/people", headers=headers).status_code == 200
    form = {"name": "obama", "image": upload(test_images("obama.jpg"))}
    enrolled = locked.post("/enroll", data=form, headers=headers)
    assert enrolled.status_code == 201


@pytest.mark.parametrize("headers", [
    {"X-API-Key": "wrong"},
    {"X-API-Key": PLAIN[:-1]},
    {"Authorization": PLAIN},
    {"Authorization": f"Basic {PLAIN}"},
    {"Authorization": "Bearer "},
    {"X-API-Key": hashlib.sha256(HASHED.encode()).hexdigest()},  # the digest itself is not a key
])
def test_invalid_keys(locked: TestClient, headers: dict[str, str]) -> None:
    response = locked.post("/recognize", data={"image": upload(test_images("obama.jpg"))}, headers=headers)
    assert response.status_code == 401


@pytest.mark.store_independent
def test_open_service_warns_at_start(settings: Settings, engine, caplog) -> None:
    caplog.set_level("WARNING")
    create_app(settings, engine=engine)
    assert any("API_KEYS is unset" in record.getMessage() for record in caplog.records)


def test_bad_digest_is_a_config_error_that_hides_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"API_KEYS": "secret-one, sha256:nothex"})
    assert "API_KEYS=<hidden>" in str(caught.value) and "secret-one" not in str(caught.value)
