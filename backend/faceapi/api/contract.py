"""The OpenAPI 3 document of the HTTP API, built once from the small helpers below.

`tests/test_contract.py` keeps it in step with the routes (every route documented,
every documented route served), validates it, and fuzzes the service against it.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

from faceapi.api.faces import MAX_FACES
from faceapi.api.faces import MAX_TOP_K
from faceapi.api.fields import MAX_ENCODINGS
from faceapi.api.fields import MAX_MIN_FACE_PX
from faceapi.api.fields import MAX_NAME_LENGTH
from faceapi.api.people import MAX_ENROLL_IMAGES
from faceapi.api.people import MAX_PAGE_SIZE
from faceapi.matching import ENCODING_WIDTH

Schema = dict[str, Any]


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
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
_FLAG = {"type": "boolean", "default": False}
_TOLERANCE = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1,
              "description": "largest distance that still counts as a match (default FACEAPI_TOLERANCE, 0.6)"}
_MIN_FACE_PX = {"type": "integer", "minimum": 1, "maximum": MAX_MIN_FACE_PX,
                "description": "smallest face to find, in pixels of the uploaded image (default FACEAPI_MIN_FACE_PX)"}
_MAX_FACES = {"type": "integer", "minimum": 1, "maximum": MAX_FACES, "description": "keep the largest faces only"}
_TOP_K = {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K,
          "description": "add the nearest distinct people to each face"}
_ENCODINGS = {"type": "array", "minItems": 1, "maxItems": MAX_ENCODINGS, "items": _ref("Encoding")}

_SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({
        "code": _STRING, "message": _STRING, "request_id": _nullable(_STRING),
        "field": _STRING, "index": _INT}, optional=("field", "index"))}),
    "Box": _object({side: _INT for side in ("top", "right", "bottom", "left")}),
    "ImageSize": _object({"width": _INT, "height": _INT}),
    "Detection": _object({"min_face_px": _INT, "limited": _BOOL}),
    "Encoding": {"type": "array", "items": _NUMBER, "minItems": ENCODING_WIDTH, "maxItems": ENCODING_WIDTH},
    "Point": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
    "Landmarks": _object({
        "right_eye": {"type": "array", "items": _ref("Point"), "minItems": 2, "maxItems": 2},
        "left_eye": {"type": "array", "items": _ref("Point"), "minItems": 2, "maxItems": 2},
        "nose_tip": {"type": "array", "items": _ref("Point"), "minItems": 1, "maxItems": 1}}),
    "Candidate": _object({"name": _STRING, "distance": _NUMBER}),
    "Decision": _object({
        "name": _nullable(_STRING), "matched": _BOOL, "distance": _nullable(_NUMBER),
        "candidates": {"type": "array", "items": _ref("Candidate")}}, optional=("candidates",)),
    "RecognizedFace": {"allOf": [_ref("Decision"), _object({"box": _ref("Box")}, optional=("box",))],
                       "description": "a face's decision; with its box when it came from a photo"},
    "Status": _object({"status": _STRING}),
    "Person": _object({"name": _STRING, "face_count": _INT}),
    "FaceInfo": _object({"id": _STRING, "created_at": _nullable({"type": "string", "format": "date-time"}),
                         "external_id": _nullable(_STRING)}),
    "VerifySide": _object({"box": _ref("Box"), "image": _ref("ImageSize")}),
    "Verdict": _object({
        "match": _BOOL, "distance": _NUMBER, "tolerance": _NUMBER, "name": _STRING,
        "image": _ref("VerifySide"), "image_a": _ref("VerifySide"), "image_b": _ref("VerifySide")},
        optional=("name", "image", "image_a", "image_b")),
    "ExportFace": _object({"id": _STRING, "created_at": _nullable({"type": "string", "format": "date-time"}),
                           "external_id": _nullable(_STRING), "encoding": _ref("Encoding")}),
    "Export": _object({
        "format": {"type": "string", "enum": ["faceapi-export"]}, "version": {"type": "integer", "enum": [1]},
        "model": _STRING, "exported_at": {"type": "string", "format": "date-time"},
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
    404: "no such person, face or endpoint",
    409: "the new name is enrolled already",
    413: "the upload, or the image's pixel count, is over the limit",
    415: "the upload is not an image this service reads",
    422: "the image cannot be used: no face, several faces, a face too small, or another model's encodings",
    503: "the store is unreachable",
    507: "the disk is full; nothing was written",
}


def _form(properties: dict[str, Schema], required: tuple[str, ...]) -> dict[str, Any]:
    optional = tuple(name for name in properties if name not in required)
    return {"multipart/form-data": {"schema": _object(properties, optional=optional)}}


def _body(*media: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for item in media:
        content.update(item)
    return {"required": True, "content": content}


def _json_body(properties: dict[str, Schema], required: tuple[str, ...]) -> dict[str, Any]:
    optional = tuple(name for name in properties if name not in required)
    return {"application/json": {"schema": _object(properties, optional=optional)}}


def _operation(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
               parameters: list[dict[str, Any]] | None = None, tag: str, open_: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    if open_:
        operation["security"] = []
    return operation


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_FACES_ANSWER = {"image": _ref("ImageSize"), "detection": _ref("Detection")}


def _paths() -> dict[str, Any]:
    image_form = {"image": _BINARY, "min_face_px": _MIN_FACE_PX, "max_faces": _MAX_FACES}
    person = _path_parameter("name", "the person's name, URL-encoded")
    return {
        "/health": {"get": _operation("Liveness", _responses(200, "the worker serves requests", _ref("Status")),
                                      tag="service", open_=True)},
        "/ready": {"get": _operation("Readiness: the store is readable",
                                     _responses(200, "ready", _ref("Status"), 503), tag="service", open_=True)},
        "/detect": {"post": _operation(
            "Find every face, without recognition",
            _responses(200, "the faces", _object({**_FACES_ANSWER, "faces": {"type": "array", "items": _object(
                {"box": _ref("Box"), "landmarks": _ref("Landmarks")}, optional=("landmarks",))}}),
                400, 401, 413, 415),
            body=_body(_form({**image_form, "landmarks": _FLAG}, ("image",))), tag="faces")},
        "/encode": {"post": _operation(
            "Every face with its 128-number encoding",
            _responses(200, "the faces", _object({**_FACES_ANSWER, "faces": {"type": "array", "items": _object(
                {"box": _ref("Box"), "encoding": _ref("Encoding")})}}), 400, 401, 413, 415),
            body=_body(_form(image_form, ("image",))), tag="faces")},
        "/recognize": {"post": _operation(
            "Recognize every face of a photo, or posted encodings",
            _responses(200, "one decision per face (no box, image or detection for posted encodings)", _object(
                {**_FACES_ANSWER, "faces": {"type": "array", "items": _ref("RecognizedFace")}},
                optional=("image", "detection")), 400, 401, 413, 415, 503),
            body=_body(_form({**image_form, "tolerance": _TOLERANCE, "top_k": _TOP_K}, ("image",)),
                       _json_body({"encodings": _ENCODINGS, "tolerance": _TOLERANCE, "top_k": _TOP_K},
                                  ("encodings",))),
            tag="faces")},
        "/verify": {"post": _operation(
            "Are two faces the same person? image_a and image_b, or image and an enrolled name",
            _responses(200, "the verdict and the boxes used", _ref("Verdict"), 400, 401, 404, 413, 415, 422, 503),
            body=_body(_form({"image_a": _BINARY, "image_b": _BINARY, "image": _BINARY, "name": _NAME,
                              "tolerance": _TOLERANCE, "min_face_px": _MIN_FACE_PX, "largest": _FLAG}, ())),
            tag="faces")},
        "/enroll": {"post": _operation(
            "Add faces to a person (creating them): photos with one face each, or encodings",
            _responses(201, "the new faces and the person's total", _object({
                "name": _STRING, "face_count": _INT, "faces": {"type": "array", "items": _object(
                    {"id": _STRING, "box": _ref("Box"), "detection": _ref("Detection")},
                    optional=("box", "detection"))}}), 400, 401, 413, 415, 422, 503, 507),
            body=_body(
                _form({"name": _NAME, "image": {"type": "array", "items": _BINARY, "maxItems": MAX_ENROLL_IMAGES},
                       "external_id": {"type": "array", "items": _STRING}, "min_face_px": _MIN_FACE_PX},
                      ("name", "image")),
                _json_body({"name": _NAME, "encodings": _ENCODINGS,
                            "external_ids": {"type": "array", "items": _nullable(_STRING)}}, ("name", "encodings"))),
            tag="people")},
        "/people": {"get": _operation(
            "Enrolled people by name, a page at a time",
            _responses(200, "a page; `next` is the cursor of the following page, null on the last", _object({
                "people": {"type": "array", "items": _ref("Person")}, "next": _nullable(_STRING)}), 400, 401, 503),
            parameters=[_query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 100}),
                        _query("cursor", _STRING)], tag="people")},
        "/people/{name}": {
            "get": _operation("A person's faces", _responses(200, "the faces, oldest first", _object({
                "name": _STRING, "face_count": _INT, "faces": {"type": "array", "items": _ref("FaceInfo")}}),
                401, 404, 503), parameters=[person], tag="people"),
            "patch": _operation(
                "Rename a person, or merge them into another",
                _responses(200, "the person under the new name", _ref("Person"), 400, 401, 404, 409, 503, 507),
                body=_body(_json_body({"name": _NAME, "merge": _FLAG}, ("name",))), parameters=[person],
                tag="people"),
            "delete": _operation("Delete a person and all their faces", _responses(200, "deleted", _object({
                "name": _STRING, "deleted_faces": _INT}), 401, 404, 503, 507), parameters=[person], tag="people")},
        "/people/{name}/faces/{face_id}": {"delete": _operation(
            "Delete one face; the person keeps the others", _responses(200, "deleted", _object({
                "name": _STRING, "deleted_face": _STRING, "face_count": _INT}), 401, 404, 503, 507),
            parameters=[person, _path_parameter("face_id", "the face's id")], tag="people")},
        "/export": {"get": _operation("Every person and encoding, as a versioned JSON file",
                                      _responses(200, "the export", _ref("Export"), 401, 503), tag="data")},
        "/import": {"post": _operation(
            "Load an export: merge (new face ids only) or replace everything, in one step",
            _responses(200, "what the file held and what was added", _object({
                "mode": _STRING, "people": _INT, "faces": _INT, "added": _INT}), 400, 401, 413, 422, 503, 507),
            body=_body(_form({"file": _BINARY, "mode": {"type": "string", "enum": ["merge", "replace"],
                                                        "default": "merge"}}, ("file",))), tag="data")},
        "/metrics": {"get": _operation(
            "Prometheus metrics of every worker: requests, latency, faces detected, people and faces enrolled, "
            "store reloads", {"200": {"description": "Prometheus' text format",
                                      "content": {"text/plain": {"schema": _STRING}}},
                              "401": {"description": _ERROR_MEANINGS[401], **_json(_ref("Error"))},
                              "default": {"description": "any other error", **_json(_ref("Error"))}},
            tag="service")},
        "/": {"get": _operation("The demo page: enroll, recognize with boxes drawn, list and delete people", {
            "200": {"description": "an HTML page", "content": {"text/html": {"schema": _STRING}}}},
            tag="docs", open_=True)},
        "/openapi.json": {"get": _operation("This document", {"200": {"description": "OpenAPI 3",
                                                                      **_json({"type": "object"})}},
                                            tag="docs", open_=True)},
        "/docs": {"get": _operation("Interactive documentation (Swagger UI)", {"200": {
            "description": "an HTML page", "content": {"text/html": {"schema": _STRING}}}}, tag="docs", open_=True)},
        "/docs/{asset}": {"get": _operation("Swagger UI's scripts and styles", {
            "200": {"description": "the file", "content": {"*/*": {"schema": _BINARY}}},
            "default": {"description": "no such file", **_json(_ref("Error"))}},
            parameters=[_path_parameter("asset", "a file of the swagger-ui-bundle package")],
            tag="docs", open_=True)},
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
