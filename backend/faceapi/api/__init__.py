"""The HTTP layer: one blueprint per area, each reading its requests and calling the engine or the store.

- `faces`: detect, encode, recognize, verify, and the health probes;
- `people`: enroll, and list, show, rename and delete people and single faces;
- `data`: export and import every enrollment;
- `docs`: the OpenAPI contract and its interactive page;
- `demo`: the demo page at ``/``.
Request fields are read by `fields`, images analysed by `images`; errors are answered by `faceapi.errors`.
"""

from __future__ import annotations

from flask import Flask

from faceapi.api import data
from faceapi.api import demo
from faceapi.api import docs
from faceapi.api import faces
from faceapi.api import people


def register(app: Flask) -> None:
    """Add every endpoint to ``app``."""
    app.url_map.converters["person"] = people.PersonNameConverter
    for blueprint in (faces.bp, people.bp, data.bp, docs.bp, demo.bp):
        app.register_blueprint(blueprint)
