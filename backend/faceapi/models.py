"""The model files the engine loads, and the identity of the encodings they make; no dlib needed.

`faceapi transfer` and the stores name models by `model_id` without loading them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import pathlib

_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
_ENCODER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
_CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"


@dataclasses.dataclass(frozen=True)
class ModelPaths:
    """Where the model files are; `from_package` finds them in ``face_recognition_models``.

    ``cnn_detector`` is dlib's MMOD face detector; it does not make encodings, so it is not part of `model_id`.
    """

    shape_predictor: pathlib.Path
    encoder: pathlib.Path
    cnn_detector: pathlib.Path | None = None

    @classmethod
    def from_package(cls) -> ModelPaths:
        """Locate the files without importing the package, whose import needs ``pkg_resources``."""
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the face_recognition_models package is not installed")
        models = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
        return cls(shape_predictor=models / _PREDICTOR_FILE, encoder=models / _ENCODER_FILE,
                   cnn_detector=models / _CNN_DETECTOR_FILE)


def model_id(paths: ModelPaths) -> str:
    """Names the models that make encodings, so that encodings of other models are never mixed in."""
    digest = hashlib.sha256()
    for path in (paths.shape_predictor, paths.encoder):
        with open(path, "rb") as model_file:
            digest.update(hashlib.file_digest(model_file, "sha256").digest())
    return f"dlib-resnet-v1+5pt:{digest.hexdigest()[:16]}"
