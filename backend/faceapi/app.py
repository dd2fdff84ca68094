"""The application factory: builds the Flask app around one engine and one store."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_cors import CORS

from faceapi import api
from faceapi import auth
from faceapi import errors
from faceapi import metrics
from faceapi import requestlog
from faceapi.config import Settings
from faceapi.config import process_settings
from faceapi.engine import FaceEngine
from faceapi.services import Services


def create_app(settings: Settings | None = None, *, engine: FaceEngine | None = None) -> Flask:
    """Build the app: load the models, open the store, register the endpoints.

    :param settings: the configuration; read from the environment when None.
    :param engine: an already loaded engine to share (tests); loaded from the settings when None.
    :raises ConfigError: the environment holds an invalid setting.
    :raises StoreError: the store cannot be read (a corrupt file, an unreachable database).
    """
    settings = process_settings() if settings is None else settings
    _configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=settings.upload_limit_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    services = Services.build(settings, engine, on_store_reload=metrics.STORE_RELOADS.inc)
    app.extensions["faceapi"] = services
    CORS(app, **cors_options(settings))
    requestlog.init_app(app)
    auth.init_app(app, settings.keys)
    errors.init_app(app)
    metrics.init_app(app)
    api.register(app)
    return app


def cors_options(settings: Settings) -> dict[str, Any]:
    """flask-cors' options: the app's, and the worker's for the answers it gives without the app."""
    return {"origins": list(settings.cors_origins), "expose_headers": [requestlog.HEADER]}


def _configure_logging(level: str) -> None:
    """Send the service's logs to stderr (gunicorn's error log) unless the host configured logging."""
    logger = logging.getLogger("faceapi")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
