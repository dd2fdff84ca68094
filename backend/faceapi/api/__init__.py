"""The HTTP layer: one blueprint per area, each reading its requests and calling the engine or the store.

- `faces`: detect, encode, and the health probes;
- `recognition`: recognize and verify, in one collection;
- `people`: enroll, and list, show, rename and delete people and single faces, in one collection;
- `data`: export and import a collection's enrollments;
- `collections`: list the collections, erase one;
- `docs`: the OpenAPI contract and its interactive page;
- `demo`: the demo page at ``/``.
The blueprints of one collection (`collections.COLLECTION_BLUEPRINTS`) are served twice: at their paths, on the
default collection, and under ``/collections/<collection>``. Request fields are read by `fields`,
images analysed by `images`; errors are answered by `faceapi.errors`.
"""

from __future__ import annotations

from flask import Flask

from faceapi.api import collections
from faceapi.api import demo
from faceapi.api import docs
from faceapi.api import faces
from faceapi.api import people
from faceapi.scopes import DEFAULT_COLLECTION


def register(app: Flask) -> None:
    """Add every endpoint to ``app``."""
    app.url_map.converters["person"] = people.PersonNameConverter
    app.url_map.converters["collection"] = collections.CollectionNameConverter
    for blueprint in collections.COLLECTION_BLUEPRINTS:
        app.register_blueprint(blueprint, url_defaults={"collection": DEFAULT_COLLECTION})
        app.register_blueprint(blueprint, url_prefix=collections.PREFIX,
                               name=collections.SCOPED_PREFIX + blueprint.name)
    for blueprint in (faces.bp, collections.bp, docs.bp, demo.bp):
        app.register_blueprint(blueprint)
