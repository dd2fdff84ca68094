"""The peer: the obvious face service a new user builds directly on face_recognition.

Module-level import (all four models), full-resolution face_locations + face_encodings,
a pickled dict of encodings. It exists only to be measured next to faceapi by
bench/compare.py, under gunicorn with sync workers (its threaded form crashes:
face_recognition shares one HOG detector per process).
"""

import os
import pickle
import warnings

import numpy as np
from flask import Flask
from flask import jsonify
from flask import request

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import face_recognition

app = Flask(__name__)
STORE = os.environ.get("PEER_STORE", "peer_faces.pkl")


def _load() -> dict:
    if os.path.exists(STORE):
        with open(STORE, "rb") as store_file:
            return pickle.load(store_file)
    return {}


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/enroll")
def enroll():
    image = face_recognition.load_image_file(request.files["image"])
    encodings = face_recognition.face_encodings(image)
    known = _load()
    known.setdefault(request.form["name"], []).append(encodings[0])
    with open(STORE, "wb") as store_file:
        pickle.dump(known, store_file)
    return {"name": request.form["name"]}, 201


@app.post("/recognize")
def recognize():
    image = face_recognition.load_image_file(request.files["image"])
    locations = face_recognition.face_locations(image)
    encodings = face_recognition.face_encodings(image, locations)
    known = _load()
    names = [name for name, faces in known.items() for _ in faces]
    matrix = [face for faces in known.values() for face in faces]
    faces = []
    for location, encoding in zip(locations, encodings, strict=True):
        distances = face_recognition.face_distance(matrix, encoding)
        best = int(np.argmin(distances)) if len(distances) else None
        matched = best is not None and distances[best] <= 0.6
        faces.append({"box": location, "name": names[best] if matched else None})
    return jsonify(faces=faces)
