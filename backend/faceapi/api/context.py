"""The running app's long-lived objects, for the endpoints."""

from __future__ import annotations

from flask import current_app

from faceapi.services import Services


def get_services() -> Services:
    """The settings, engine, pipeline and store of the running app."""
    return current_app.extensions["faceapi"]
