"""faceapi: a face-recognition HTTP service. The public surface is `create_app`.

Importing the package loads no model and no web framework: ``create_app`` is
imported on first use, so the engine, imaging, matching and store modules stay
usable (and testable) without Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from faceapi.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from faceapi.app import create_app

        return create_app
    raise AttributeError(f"module 'faceapi' has no attribute {name!r}")
