"""The OpenAPI contract: valid, in step with the routes, and honoured by every answer under fuzzing."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import positive_data_acceptance

from faceapi.api.contract import openapi_document

# The document, and the service's answers to it, do not depend on the store.
pytestmark = pytest.mark.store_independent
_SKIPPED_METHODS = {"HEAD", "OPTIONS"}


def _routes(app) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every rule the app serves, ``<path:name>`` written ``{name}``."""
    return {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - _SKIPPED_METHODS
    }


def test_document_is_valid_openapi(client) -> None:
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json == openapi_document()
    validate(served.json)


def test_every_route_is_documented_and_every_documented_route_exists(app) -> None:
    documented = {(path, method) for path, item in openapi_document()["paths"].items() for method in item}
    assert documented == _routes(app)


def test_docs_page_is_served_without_a_cdn(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # every asset from this service
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        response = client.get("/" + asset)
        body = response.get_data()
        response.close()  # the file the package serves from
        assert response.status_code == 200 and len(body) > 1000, asset


@pytest.mark.parametrize(("method", "path", "status", "code", "says"), [
    ("get", "/nowhere", 404, "not_found", "/openapi.json"),
    ("put", "/recognize", 405, "method_not_allowed", "does not take PUT; it takes POST"),
    ("get", "/recognize", 405, "method_not_allowed", "POST"),
])
def test_framework_errors_in_our_words(client, method: str, path: str, status: int, code: str, says: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status and response.json["error"]["code"] == code
    assert says in response.json["error"]["message"]


def test_upload_limit_in_our_words(make_client) -> None:
    from tests.servers import upload

    response = make_client(upload_limit_bytes=1000).post("/recognize", data={"image": upload(b"x" * 5000, "big.jpg")})
    assert response.status_code == 413 and response.json["error"]["code"] == "upload_too_large"
    assert "1000 bytes" in response.json["error"]["message"]


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_fuzzed_requests_get_documented_answers(case) -> None:
    """Schemathesis's requests from the document: no 5xx, and every answer matches its schema.

    Left out: that every schema-valid request succeeds (an upload of random bytes is schema-valid,
    since OpenAPI cannot say "a decodable photo", and rightly gets 415); and, for multipart forms only,
    that every schema-violating request is refused: schemathesis's "an empty list where a number is due"
    goes on the wire as no part at all, which is the valid request without that field.
    """
    excluded = [positive_data_acceptance]
    if case.media_type == "multipart/form-data":
        excluded.append(negative_data_rejection)
    case.call_and_validate(excluded_checks=excluded)
