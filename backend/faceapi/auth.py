"""API keys: when configured, every endpoint but the health probes needs one.

Only SHA-256 digests of the keys are held (they may be configured as digests, so
plain keys need not sit in the environment). A presented key is hashed and
compared with every digest in constant time, so timing reveals neither which
key nor how much of one matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Flask
from flask import request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

log = logging.getLogger(__name__)

# Probes must answer without a key: platforms call them unauthenticated. The contract, the docs
# and demo pages and their static files hold no data; the pages send the key with the calls they make.
OPEN_ENDPOINTS = frozenset({"faces.health", "faces.ready", "docs.openapi", "docs.docs_page", "docs.docs_asset",
                            "demo.page", "static"})


def init_app(app: Flask, key_digests: tuple[str, ...]) -> None:
    """Require one of the keys whose SHA-256 hex digests are ``key_digests``; none means open."""
    if not key_digests:
        log.warning("API_KEYS is unset: every endpoint is open to anyone who can reach the service")
        return
    digests = tuple(bytes.fromhex(digest) for digest in key_digests)

    @app.before_request
    def _require_api_key() -> None:
        if request.endpoint in OPEN_ENDPOINTS or request.method == "OPTIONS":
            return
        presented = _presented_key()
        if presented is None or not _matches(presented, digests):
            raise Unauthorized(
                "a valid API key is required, as header X-API-Key or Authorization: Bearer <key>",
                www_authenticate=_bearer_challenge(),
            )


def _presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def _matches(key: str, digests: tuple[bytes, ...]) -> bool:
    presented = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    matched = False
    for digest in digests:  # no early exit: every digest is compared
        matched |= hmac.compare_digest(presented, digest)
    return matched


def _bearer_challenge() -> WWWAuthenticate:
    return WWWAuthenticate("bearer", {"realm": "faceapi"})
