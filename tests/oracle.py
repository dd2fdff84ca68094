"""The reference implementation, face_recognition 1.3.0, imported only by tests.

Installed with --no-deps by scripts/test so that dlib is never compiled; its
model package still imports pkg_resources, whose deprecation warning is not ours.
"""

from __future__ import annotations

import warnings

from PIL import ImageFile

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import face_recognition  # noqa: F401

# Its import sets this process-wide, which would make Pillow accept truncated uploads in
# every later test; the service never sets it, so the test process must not either.
ImageFile.LOAD_TRUNCATED_IMAGES = False
