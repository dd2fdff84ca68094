"""Endpoints for the collections themselves: list them, and erase one.

A key sees only the collections it reaches (`faceapi.auth`): the list leaves out the
others, and a call naming one of them is refused before anything is looked up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint
from werkzeug.routing import BaseConverter

from faceapi import auth
from faceapi.api import data
from faceapi.api import fields
from faceapi.api import people
from faceapi.api import recognition
from faceapi.api.context import get_services
from faceapi.scopes import COLLECTION_NAME

bp = Blueprint("collections", __name__)

PREFIX = "/collections/<collection:collection>"
# Served at their paths on the default collection, and under PREFIX registered as SCOPED_PREFIX + name.
COLLECTION_BLUEPRINTS = (recognition.bp, people.bp, data.bp)
SCOPED_PREFIX = "collection_"


class CollectionNameConverter(BaseConverter):
    """A collection's name in a URL (`faceapi.scopes.COLLECTION_NAME`); any other segment matches no route."""

    regex = COLLECTION_NAME.pattern


@bp.get("/collections")
@fields.accepts(query=(fields.LIMIT, fields.CURSOR))
def collections(values: dict[str, Any]) -> dict[str, Any]:
    """The collections that have people and that this key reaches, by name, with their counts, a page at a
    time as ``/people`` pages."""
    limit = values["limit"] or fields.DEFAULT_PAGE_SIZE
    after = values["cursor"]
    reached = [summary for summary in get_services().store.collections()
               if auth.reaches(summary.name) and (after is None or summary.name > after)]
    page = reached[:limit]
    return {"collections": [dataclasses.asdict(summary) for summary in page],
            "next": fields.cursor_after(page[-1].name) if len(reached) > limit else None}


@bp.delete(PREFIX)
def delete_collection(collection: str) -> dict[str, Any]:
    """Erase a collection: every person and face in it (and, in the pickle store, from its backup)."""
    removed = get_services().store.remove_collection(collection)
    return {"name": collection, "deleted_faces": removed}
