"""The reference implementation, face_recognition 1.3.0, imported only by tests.

Installed with --no-deps by scripts/test so that dlib is never compiled; its
model package still imports pkg_resources, whose deprecation warning is not ours.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import face_recognition  # noqa: F401
