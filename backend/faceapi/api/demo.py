"""The demo page at ``/``: enroll, recognize with the boxes drawn, list and delete people.

A static page (``faceapi/static/demo.*``, served by Flask's static route) that calls the
API from the browser with the API key the user types in; no CDN, no build step.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import send_from_directory

bp = Blueprint("demo", __name__)


@bp.get("/")
def page() -> Response:
    """The demo page; it holds no data (everything comes through the API, with the key)."""
    return send_from_directory(current_app.static_folder, "demo.html", max_age=0)
