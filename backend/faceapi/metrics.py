"""Prometheus metrics at ``/metrics``, summed over every gunicorn worker.

Under gunicorn each worker counts in its own files (prometheus_client's multiprocess
mode: ``gunicorn.conf.py`` gives every start a fresh ``PROMETHEUS_MULTIPROC_DIR``),
and a scrape, whichever worker serves it, adds them all up. Without that variable
(the Flask test client, a plain ``flask run``) the process counts alone.

- ``faceapi_requests_total{endpoint, method, status}`` and
  ``faceapi_request_duration_seconds{endpoint, method}``: the endpoint is the masked
  route (``/people/<name>``), so no person's name becomes a label;
- ``faceapi_faces_detected_total{endpoint}``: faces found in uploaded images;
- ``faceapi_people_enrolled`` and ``faceapi_faces_enrolled``: read from the store at scrape, summed over
  the collections (so only a key that reaches every collection may scrape);
- ``faceapi_store_reloads_total``: the store read afresh by a process (its first read, and each
  after another process changed it: the pickle file, or a PostgreSQL collection's faces).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from faceapi import auth
from faceapi.requestlog import elapsed_s
from faceapi.requestlog import masked_route

REQUESTS = Counter("faceapi_requests", "HTTP requests answered", ["endpoint", "method", "status"])
LATENCY = Histogram("faceapi_request_duration_seconds", "Time to answer an HTTP request", ["endpoint", "method"],
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
FACES_DETECTED = Counter("faceapi_faces_detected", "Faces found in uploaded images", ["endpoint"])
STORE_RELOADS = Counter("faceapi_store_reloads", "Reads of the store afresh by a process, after a change")

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    """Time (by `faceapi.requestlog`'s clock) and count every request of ``app``, and serve ``/metrics``."""
    app.after_request(_count)
    app.register_blueprint(bp)


def faces_detected(count: int) -> None:
    """Count faces found by the current request's endpoint."""
    FACES_DETECTED.labels(masked_route()).inc(count)


@bp.get("/metrics")
@auth.needs(auth.SERVICE)
def metrics() -> Response:
    """Every worker's counters, summed, and the store's totals, in Prometheus' text format."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(_StoreTotals())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _count(response: Response) -> Response:
    endpoint = masked_route()
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    elapsed = elapsed_s()
    if elapsed is not None:
        LATENCY.labels(endpoint, request.method).observe(elapsed)
    return response


class _StoreTotals(Collector):
    """People and faces enrolled, read from the store when scraped (every worker sees the same store)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        collections = current_app.extensions["faceapi"].store.collections()
        yield GaugeMetricFamily("faceapi_people_enrolled", "People enrolled, in every collection",
                                value=sum(summary.person_count for summary in collections))
        yield GaugeMetricFamily("faceapi_faces_enrolled", "Faces enrolled, in every collection",
                                value=sum(summary.face_count for summary in collections))


class _Forward(Collector):
    """This process's own metrics, when there is no multiprocess directory."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator:
        return self._source.collect()
