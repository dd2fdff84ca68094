"""The contract: ``/openapi.json``, and ``/docs``, Swagger UI served from the swagger-ui-bundle package."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import send_from_directory
from swagger_ui_bundle import swagger_ui_path

from faceapi.api.contract import openapi_document

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>faceapi</title><link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});</script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """The OpenAPI 3 document of every endpoint."""
    return openapi_document()


@bp.get("/docs")
def docs_page() -> Response:
    """Interactive documentation: Swagger UI on this service's own contract, no CDN."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/<path:asset>")
def docs_asset(asset: str) -> Response:
    """Swagger UI's scripts and styles, from the installed package."""
    return send_from_directory(swagger_ui_path, asset, max_age=86400)
