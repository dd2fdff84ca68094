"""The demo page at ``/``: enroll, recognize with the boxes drawn, list and delete people.

A static page (``faceapi/static/demo.*``; the script and styles go through Flask's static
route) that calls the API from the browser with the API key the user types in; no CDN,
no build step.
"""

from __future__ import annotations

import functools
import pathlib

from flask import Blueprint
from flask import Response

bp = Blueprint("demo", __name__)

_PAGE = pathlib.Path(__file__).resolve().parents[1] / "static" / "demo.html"


@bp.get("/")
def page() -> Response:
    """The demo page; it holds no data (everything comes through the API, with the key)."""
    return Response(_page_html(), mimetype="text/html")


@functools.cache
def _page_html() -> str:
    return _PAGE.read_text(encoding="utf-8")
