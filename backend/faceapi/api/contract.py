"""The OpenAPI 3 document of the HTTP API, built once from the small helpers below.

Request fields are not restated here: each endpoint's come from its `fields.accepts`
declaration, the one its view reads them by; which endpoints need no key comes from
`faceapi.auth`. `tests/test_contract.py` keeps the document in step with the routes
(every route documented, every documented route served), validates it, and fuzzes the
service against it.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

from faceapi.api import collections
from faceapi.api import data
from faceapi.api import faces
from faceapi.api import people
from faceapi.api import recognition
from faceapi.api.collections import COLLECTION_BLUEPRINTS
from faceapi.api.collections import SCOPED_PREFIX
from faceapi.api.fields import Accepts
from faceapi.api.fields import Field
from faceapi.auth import OPEN_ENDPOINTS
from faceapi.matching import ENCODING_WIDTH
from faceapi.scanning import DETECTORS
from faceapi.scopes import COLLECTION_NAME
from faceapi.scopes import DEFAULT_COLLECTION

Schema = dict[str, Any]
_VIEW_MODULES = {"faces": faces, "recognition": recognition, "people": people, "data": data,
                 "collections": collections}
_COLLECTION_BLUEPRINT_NAMES = frozenset(blueprint.name for blueprint in COLLECTION_BLUEPRINTS)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


_INT = {"type": "integer"}
_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_BOOL = {"type": "boolean"}
_BINARY = {"type": "string", "format": "binary"}

_SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({
        "code": _STRING, "message": _STRING, "request_id": _nullable(_STRING),
        "field": _STRING, "index": _INT}, optional=("field", "index"))}),
    "Box": _object({side: _INT for side in ("top", "right", "bottom", "left")}),
    "ImageSize": _object({"width": _INT, "height": _INT}),
    "Detection": _object({"min_face_px": _INT, "limited": _BOOL,
                          "detector": {"type": "string", "enum": list(DETECTORS)}}),
    "Encoding": {"type": "array", "items": _NUMBER, "minItems": ENCODING_WIDTH, "maxItems": ENCODING_WIDTH},
    "Point": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
    "Landmarks": _object({
        "right_eye": {"type": "array", "items": _ref("Point"), "minItems": 2, "maxItems": 2},
        "left_eye": {"type": "array", "items": _ref("Point"), "minItems": 2, "maxItems": 2},
        "nose_tip": {"type": "array", "items": _ref("Point"), "minItems": 1, "maxItems": 1}}),
    "Candidate": _object({"name": _STRING, "distance": _NUMBER}),
    "Decision": _object({
        "name": _nullable(_STRING), "matched": _BOOL, "distance": _nullable(_NUMBER),
        "false_match_rate": _nullable(_NUMBER),
        "candidates": {"type": "array", "items": _ref("Candidate")}}, optional=("candidates",)),
    "RecognizedFace": {"allOf": [_ref("Decision"), _object({"box": _ref("Box"), "confidence": _NUMBER},
                                                            optional=("box", "confidence"))],
                       "description": "a face's decision; with its box when it came from a photo"},
    "Status": _object({"status": _STRING}),
    "Person": _object({"name": _STRING, "face_count": _INT}),
    "Collection": _object({"name": _STRING, "person_count": _INT, "face_count": _INT}),
    "FaceInfo": _object({"id": _STRING, "created_at": _nullable({"type": "string", "format": "date-time"}),
                         "external_id": _nullable(_STRING)}),
    "VerifySide": _object({"box": _ref("Box"), "confidence": _NUMBER, "image": _ref("ImageSize")},
                          optional=("confidence",)),
    "Verdict": _object({
        "match": _BOOL, "distance": _NUMBER, "tolerance": _NUMBER, "name": _STRING,
        "image": _ref("VerifySide"), "image_a": _ref("VerifySide"), "image_b": _ref("VerifySide")},
        optional=("name", "image", "image_a", "image_b")),
    "ExportFace": _object({"id": _STRING, "created_at": _nullable({"type": "string", "format": "date-time"}),
                           "external_id": _nullable(_STRING), "encoding": _ref("Encoding")}),
    "Export": _object({
        "format": {"type": "string", "enum": [data.EXPORT_FORMAT]},
        "version": {"type": "integer", "enum": [data.EXPORT_VERSION]},
        "model": _STRING, "exported_at": {"type": "string", "format": "date-time"},
        "collection": {**_STRING, "description": "the collection exported (an import goes where its URL says)"},
        "people": {"type": "array", "items": _object({
            "name": _STRING, "faces": {"type": "array", "items": _ref("ExportFace")}})}}),
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(status: int, description: str, schema: Schema, *errors: int) -> dict[str, Any]:
    """The success answer, each listed error status, and every other status as an Error body."""
    answers: dict[str, Any] = {str(status): {"description": description, **_json(schema)}}
    for code in errors:
        answers[str(code)] = {"description": _ERROR_MEANINGS[code], **_json(_ref("Error"))}
    answers["default"] = {"description": "any other error, in the same shape", **_json(_ref("Error"))}
    return answers


_ERROR_MEANINGS = {
    400: "a field is missing or invalid; `field` (and `index`) say which",
    401: "an API key is required (when API_KEYS is set)",
    403: "the API key's scope does not allow this call (another collection, or a read-only key)",
    404: "no such person, face, collection or endpoint",
    409: "the new name is enrolled already",
    413: "the upload, or the image's pixel count, is over the limit",
    415: "the upload is not an image this service reads",
    422: "the image cannot be used: no face, several faces, a face too small, or another model's encodings",
    503: "the store is unreachable",
    507: "the disk is full; nothing was written",
}


def _operation(endpoint: str, summary: str, responses: dict[str, Any], *, tag: str,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The operation of view ``endpoint``: its fields from its `fields.accepts`, its key from `faceapi.auth`."""
    operation: dict[str, Any] = {"operationId": endpoint, "summary": summary, "tags": [tag], "responses": responses}
    blueprint, _, function = endpoint.partition(".")
    blueprint = blueprint.removeprefix(SCOPED_PREFIX)
    accepted: Accepts | None = getattr(getattr(_VIEW_MODULES.get(blueprint), function, None), "accepts", None)
    parameters = list(parameters or [])
    if accepted is not None:
        content = {media: {"schema": _fields_schema(declared, accepted.required)}
                   for media, declared in (("multipart/form-data", accepted.form), ("application/json", accepted.json))
                   if declared}
        if content:
            operation["requestBody"] = {"required": True, "content": content}
        parameters += [{"name": field.name, "in": "query", "required": field.name in accepted.required,
                        "schema": field.schema} for field in accepted.query]
    if parameters:
        operation["parameters"] = parameters
    if endpoint in OPEN_ENDPOINTS:
        operation["security"] = []
    return operation


def _fields_schema(declared: tuple[Field, ...], required: frozenset[str]) -> Schema:
    return _object({field.name: field.schema for field in declared},
                   optional=tuple(field.name for field in declared if field.name not in required))


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


_FACES_ANSWER = {"image": _ref("ImageSize"), "detection": _ref("Detection")}


_COLLECTION_PATH = "/collections/{collection}"
_COLLECTION = {"name": "collection", "in": "path", "required": True,
               "description": f"the collection; the same path without this prefix uses {DEFAULT_COLLECTION!r}",
               "schema": {"type": "string", "pattern": f"^{COLLECTION_NAME.pattern}$"}}


def _paths() -> dict[str, Any]:
    paths = _unscoped_paths()
    paths.update(_in_a_collection(paths))
    paths["/collections"] = {"get": _operation(
        "collections.collections", "The collections that have people and that the key reaches",
        _responses(200, "a page by name; `next` is the cursor of the following page, null on the last", _object({
            "collections": {"type": "array", "items": _ref("Collection")}, "next": _nullable(_STRING)}),
            400, 401, 403, 503), tag="collections")}
    paths[_COLLECTION_PATH] = {"delete": _operation(
        "collections.delete_collection", "Erase a collection: every person and face in it",
        _responses(200, "erased", _object({"name": _STRING, "deleted_faces": _INT}), 401, 403, 404, 503, 507),
        parameters=[_COLLECTION], tag="collections")}
    return paths


def _in_a_collection(paths: dict[str, Any]) -> dict[str, Any]:
    """The paths of `faceapi.api.COLLECTION_BLUEPRINTS` again, under ``/collections/{collection}``."""
    scoped = {}
    for path, item in paths.items():
        if all(op["operationId"].partition(".")[0] in _COLLECTION_BLUEPRINT_NAMES for op in item.values()):
            scoped[_COLLECTION_PATH + path] = {method: {
                **operation, "operationId": SCOPED_PREFIX + operation["operationId"],
                "summary": f"{operation['summary']} (in the collection)",
                "parameters": [_COLLECTION, *operation.get("parameters", [])]} for method, operation in item.items()}
    return scoped


def _unscoped_paths() -> dict[str, Any]:
    person = _path_parameter("name", "the person's name, URL-encoded")
    html = {"200": {"description": "an HTML page", "content": {"text/html": {"schema": _STRING}}}}
    return {
        "/health": {"get": _operation("faces.health", "Liveness",
                                      _responses(200, "the worker serves requests", _ref("Status")), tag="service")},
        "/ready": {"get": _operation("faces.ready", "Readiness: the store is readable",
                                     _responses(200, "ready", _ref("Status"), 503), tag="service")},
        "/detect": {"post": _operation(
            "faces.detect", "Find every face, without recognition",
            _responses(200, "the faces", _object({**_FACES_ANSWER, "faces": {"type": "array", "items": _object(
                {"box": _ref("Box"), "confidence": _NUMBER, "landmarks": _ref("Landmarks")},
                optional=("confidence", "landmarks"))}}),
                400, 401, 413, 415), tag="faces")},
        "/encode": {"post": _operation(
            "faces.encode", "Every face with its 128-number encoding",
            _responses(200, "the faces", _object({**_FACES_ANSWER, "faces": {"type": "array", "items": _object(
                {"box": _ref("Box"), "confidence": _NUMBER, "encoding": _ref("Encoding")}, optional=("confidence",))}}),
                400, 401, 413, 415), tag="faces")},
        "/recognize": {"post": _operation(
            "recognition.recognize", "Recognize every face of a photo, or posted encodings",
            _responses(200, "one decision per face (no box, image or detection for posted encodings)", _object(
                {**_FACES_ANSWER, "faces": {"type": "array", "items": _ref("RecognizedFace")}},
                optional=("image", "detection")), 400, 401, 413, 415, 503), tag="faces")},
        "/verify": {"post": _operation(
            "recognition.verify", "Are two faces the same person? image_a and image_b, or image and an enrolled name",
            _responses(200, "the verdict and the boxes used", _ref("Verdict"), 400, 401, 404, 413, 415, 422, 503),
            tag="faces")},
        "/enroll": {"post": _operation(
            "people.enroll", "Add faces to a person (creating them): photos with one face each, or encodings",
            _responses(201, "the new faces and the person's total", _object({
                "name": _STRING, "face_count": _INT, "faces": {"type": "array", "items": _object(
                    {"id": _STRING, "box": _ref("Box"), "detection": _ref("Detection")},
                    optional=("box", "detection"))}}), 400, 401, 413, 415, 422, 503, 507), tag="people")},
        "/people": {"get": _operation(
            "people.people", "Enrolled people by name, a page at a time",
            _responses(200, "a page; `next` is the cursor of the following page, null on the last", _object({
                "people": {"type": "array", "items": _ref("Person")}, "next": _nullable(_STRING)}), 400, 401, 503),
            tag="people")},
        "/people/{name}": {
            "get": _operation("people.person", "A person's faces", _responses(200, "the faces, oldest first", _object({
                "name": _STRING, "face_count": _INT, "faces": {"type": "array", "items": _ref("FaceInfo")}}),
                401, 404, 503), parameters=[person], tag="people"),
            "patch": _operation(
                "people.rename_person", "Rename a person, or merge them into another",
                _responses(200, "the person under the new name", _ref("Person"), 400, 401, 404, 409, 503, 507),
                parameters=[person], tag="people"),
            "delete": _operation("people.delete_person", "Delete a person and all their faces",
                                 _responses(200, "deleted", _object({"name": _STRING, "deleted_faces": _INT}),
                                            401, 404, 503, 507), parameters=[person], tag="people")},
        "/people/{name}/faces/{face_id}": {"delete": _operation(
            "people.delete_face", "Delete one face; the person keeps the others", _responses(200, "deleted", _object({
                "name": _STRING, "deleted_face": _STRING, "face_count": _INT}), 401, 404, 503, 507),
            parameters=[person, _path_parameter("face_id", "the face's id")], tag="people")},
        "/export": {"get": _operation("data.export", "Every person and encoding, as a versioned JSON file",
                                      _responses(200, "the export", _ref("Export"), 401, 503), tag="data")},
        "/import": {"post": _operation(
            "data.import_file", "Load an export: merge (new face ids only) or replace everything, in one step",
            _responses(200, "what the file held and what was added", _object({
                "mode": _STRING, "people": _INT, "faces": _INT, "added": _INT}), 400, 401, 413, 422, 503, 507),
            tag="data")},
        "/metrics": {"get": _operation(
            "metrics.metrics",
            "Prometheus metrics of every worker: requests, latency, faces detected, people and faces enrolled, "
            "store reloads", {"200": {"description": "Prometheus' text format",
                                      "content": {"text/plain": {"schema": _STRING}}},
                              "401": {"description": _ERROR_MEANINGS[401], **_json(_ref("Error"))},
                              "default": {"description": "any other error", **_json(_ref("Error"))}},
            tag="service")},
        "/": {"get": _operation(
            "demo.page", "The demo page: enroll, recognize with boxes drawn, list and delete people", html,
            tag="docs")},
        "/openapi.json": {"get": _operation("docs.openapi", "This document",
                                            {"200": {"description": "OpenAPI 3", **_json({"type": "object"})}},
                                            tag="docs")},
        "/docs": {"get": _operation("docs.docs_page", "Interactive documentation (Swagger UI)", html, tag="docs")},
        "/docs/{asset}": {"get": _operation("docs.docs_asset", "Swagger UI's scripts and styles", {
            "200": {"description": "the file", "content": {"*/*": {"schema": _BINARY}}},
            "default": {"description": "no such file", **_json(_ref("Error"))}},
            parameters=[_path_parameter("asset", "a file of the swagger-ui-bundle package")], tag="docs")},
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once; callers must not change it)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "faceapi", "version": version("faceapi"),
                 "description": "Face recognition over HTTP: enroll people from photos, recognize every face."},
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"}},
        },
        # A key is needed only when the service sets API_KEYS: either scheme, or none.
        "security": [{"ApiKey": []}, {"Bearer": []}, {}],
    }
