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


@pytest.mark.store_independent
def test_key_entries_with_scopes() -> None:
    keys = Settings.from_env({"API_KEYS": f"plain, {PLAIN} read-only collections=class-3a|class-3b,"
                                          f" sha256:{'AB' * 32} collections=school.1"}).keys
    assert [(key.collections, key.read_only, key.unrestricted) for key in keys] == [
        (None, False, True), (frozenset({"class-3a", "class-3b"}), True, False),
        (frozenset({"school.1"}), False, False)]
    assert keys[0].digest == hashlib.sha256(b"plain").digest() and keys[2].digest == bytes.fromhex("ab" * 32)


@pytest.mark.store_independent
@pytest.mark.parametrize(("entry", "says"), [
    ("my secret words", "entry 2: option 1 is neither read-only nor collections=a|b"),
    ("k-1 collections=bad/name", "entry 2: 'bad/name' is not a collection name"),
    ("k-1 collections=", "entry 2: '' is not a collection name"),
    ("sha256:12 read-only", "entry 2: a sha256: key must hold 64 hex digits"),
])
def test_malformed_key_entries_are_named_by_position_never_quoted(entry: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"API_KEYS": f"first-key, {entry}"})
    message = str(caught.value)
    assert says in message and "secret" not in message and "words" not in message and "first-key" not in message


def test_keys_from_a_file(make_client, tmp_path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# door devices, one per line\n"
                        f"sha256:{hashlib.sha256(b'door-key').hexdigest()} read-only collections=class-3a  # 3a\n"
                        "\n   \n")
    settings = Settings.from_env({"API_KEYS": PLAIN, "FACEAPI_API_KEYS_FILE": str(key_file)})
    assert len(settings.keys) == 2 and settings.keys[1].read_only
    client = make_client(api_keys=settings.api_keys, api_keys_file=settings.api_keys_file)
    door = {"X-API-Key": "door-key"}
    assert client.post("/collections/class-3a/recognize", json={"encodings": [[0.0] * 128]},
                       headers=door).status_code == 200
    assert client.get("/collections/class-3a/people", headers=door).status_code == 403
    assert client.get("/collections/class-3a/people", headers={"X-API-Key": PLAIN}).status_code == 200
    with pytest.raises(ConfigError, match="FACEAPI_API_KEYS_FILE=.*cannot read .*missing: No such file"):
        Settings.from_env({"FACEAPI_API_KEYS_FILE": str(tmp_path / "missing")})
    key_file.write_text("ok-key\nbad-key collections=a,b\n")
    with pytest.raises(ConfigError, match="line 2: 'a,b' is not a collection name"):
        Settings.from_env({"FACEAPI_API_KEYS_FILE": str(key_file)})
