"""Uploaded images through the pipeline (`faceapi.pipeline`), as the endpoints need them.

The HTTP side of the analysis: the upload's bytes in, the pipeline's exceptions out
as 422 answers naming the field, and the faces counted for ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import FileStorage

from faceapi import metrics
from faceapi.api.context import get_services
from faceapi.api.fields import DETECTION
from faceapi.errors import InvalidRequest
from faceapi.pipeline import Analysis
from faceapi.pipeline import FaceCountError
from faceapi.pipeline import MultipleFaces


def find_faces(upload: FileStorage, values: dict[str, Any], *, max_faces: int | None = None,
               encode: bool = True, landmarks: bool = False) -> Analysis:
    """Every face in ``upload`` (the ``max_faces`` largest, largest first, when given), searched as the
    request's `fields.DETECTION` values say."""
    analysis = get_services().pipeline.find_faces(_bytes(upload), **detection(values), max_faces=max_faces,
                                                  encode=encode, landmarks=landmarks)
    metrics.faces_detected(len(analysis.faces))
    return analysis


def find_one_face(upload: FileStorage, field: str, values: dict[str, Any], *, largest: bool = False,
                  min_side_px: int | None = None) -> Analysis:
    """The one face of ``upload``, encoded; 422 naming ``field`` when there is none, several or it is too small."""
    try:
        analysis = get_services().pipeline.find_one_face(_bytes(upload), **detection(values), largest=largest,
                                                         min_side_px=min_side_px)
    except FaceCountError as error:
        advice = "; send largest=true to use the largest" if isinstance(error, MultipleFaces) else ""
        raise InvalidRequest(error.code, f"{field}: {error}{advice}", 422, field=field) from None
    metrics.faces_detected(len(analysis.faces))
    return analysis


def detection(values: dict[str, Any]) -> dict[str, Any]:
    """The request's detection fields (`fields.DETECTION`), as the pipeline takes them."""
    return {field.name: values[field.name] for field in DETECTION}


def _bytes(upload: FileStorage) -> bytes:
    data = upload.read()
    if not data:
        raise InvalidRequest("empty_image", "the uploaded image is empty", field=upload.name or "image")
    return data
