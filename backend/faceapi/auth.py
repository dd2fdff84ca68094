"""API keys: when configured, every endpoint but the health probes needs one, and each key has a scope.

Only SHA-256 digests of the keys are held (they may be configured as digests, so
plain keys need not sit in the environment). A presented key is hashed and
compared with every digest in constant time, so timing reveals neither which
key nor how much of one matched.

A key limited to some collections, or to recognition (`faceapi.scopes`), gets
``403 forbidden`` elsewhere. The check runs before the view, from the route alone,
so the answer is the same whether the collection exists or not, and nothing in it
names the collection's people or other collections.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Flask
from flask import current_app
from flask import g
from flask import request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import Unauthorized

from faceapi.scopes import ApiKey

log = logging.getLogger(__name__)

# Probes must answer without a key: platforms call them unauthenticated. The contract, the docs
# and demo pages and their static files hold no data; the pages send the key with the calls they make.
OPEN_ENDPOINTS = frozenset({"faces.health", "faces.ready", "docs.openapi", "docs.docs_page", "docs.docs_asset",
                            "demo.page", "static"})

# What a view needs of a key (`needs`): recognition is allowed to read-only keys; management (the default:
# anything that lists, changes or exports enrollments) is not; service-wide views need an unrestricted key.
RECOGNITION = "recognition"
MANAGEMENT = "management"
SERVICE = "service"
_View = TypeVar("_View", bound=Callable[..., object])


def needs(access: str) -> Callable[[_View], _View]:
    """Mark a view with the access it needs (`RECOGNITION`, `MANAGEMENT`, `SERVICE`)."""
    def mark(view: _View) -> _View:
        view.access = access  # type: ignore[attr-defined]
        return view
    return mark


def view_access(view: Callable[..., object]) -> str:
    """The access ``view`` needs: what `needs` marked, else `MANAGEMENT`."""
    return getattr(view, "access", MANAGEMENT)


def init_app(app: Flask, keys: tuple[ApiKey, ...]) -> None:
    """Require one of ``keys``, within its scope; none means open."""
    if not keys:
        log.warning("API_KEYS is unset: every endpoint is open to anyone who can reach the service")
        return

    @app.before_request
    def _require_api_key() -> None:
        if request.endpoint in OPEN_ENDPOINTS or request.method == "OPTIONS":
            return
        presented = _presented_key()
        key = None if presented is None else _matching_key(presented, keys)
        if key is None:
            raise Unauthorized(
                "a valid API key is required, as header X-API-Key or Authorization: Bearer <key>",
                www_authenticate=_bearer_challenge(),
            )
        g.api_key = key
        if request.endpoint is not None and not _permits(key):
            raise Forbidden("this API key may not make this call: its scope is limited to some collections, "
                            "or to detect, encode, recognize and verify")


def current_key() -> ApiKey | None:
    """The key of this request; None when the service has no keys."""
    return g.get("api_key")


def reaches(collection: str) -> bool:
    """Whether this request's key may see ``collection`` (always, when the service has no keys)."""
    key = current_key()
    return key is None or key.reaches(collection)


def _permits(key: ApiKey) -> bool:
    access = view_access(current_app.view_functions[request.endpoint])
    if access == SERVICE:
        return key.unrestricted
    if key.read_only and access != RECOGNITION:
        return False
    collection = (request.view_args or {}).get("collection")
    return collection is None or key.reaches(collection)


def _presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def _matching_key(presented: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    matched = None
    for key in keys:  # no early exit: every digest is compared
        if hmac.compare_digest(digest, key.digest):
            matched = key
    return matched


def _bearer_challenge() -> WWWAuthenticate:
    return WWWAuthenticate("bearer", {"realm": "faceapi"})
