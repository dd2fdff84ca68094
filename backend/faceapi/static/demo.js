// The demo page: enroll, recognize (boxes and names drawn over the photo), list and delete people,
// and a check-in camera. Plain JavaScript against the service's own API; the API key, when given,
// goes in X-API-Key; every call goes to the collection in the header (empty: the default one).
// ?mode=camera shows only the camera, for a device at a door; ?collection=x fills the collection.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("faceapi-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("faceapi-key", keyInput.value));
const collectionInput = $("collection");
collectionInput.value = params.get("collection") || sessionStorage.getItem("faceapi-collection") || "";
collectionInput.addEventListener("change", () => {
  sessionStorage.setItem("faceapi-collection", collectionInput.value);
  refreshPeople();
});
const cameraOnly = params.get("mode") === "camera";
document.body.classList.toggle("camera-only", cameraOnly);

// A collection's endpoint: under collections/<name>/ when one is given.
function inCollection(path) {
  const name = collectionInput.value.trim();
  return name ? `collections/${encodeURIComponent(name)}/${path}` : path;
}

async function call(method, path, body) {
  const headers = keyInput.value ? { "X-API-Key": keyInput.value } : {};
  const response = await fetch(inCollection(path), { method, headers, body });
  const answer = await response.json();
  if (!response.ok) {
    throw new Error(`${answer.error.code}: ${answer.error.message}`);
  }
  return answer;
}

// The detector chosen in the header, for enroll and recognize (empty: the service's default).
function addDetector(form) {
  if ($("detector").value) {
    form.append("detector", $("detector").value);
  }
}

function show(element, text, isError) {
  element.textContent = text;
  element.classList.toggle("error", Boolean(isError));
}

$("enroll-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("name", $("enroll-name").value);
  for (const file of $("enroll-image").files) {
    form.append("image", file);
  }
  addDetector(form);
  try {
    const answer = await call("POST", "enroll", form);
    show($("enroll-result"), `Enrolled ${answer.faces.length} face(s) for ${answer.name} (${answer.face_count} in all).`);
    event.target.reset();
    refreshPeople();
  } catch (error) {
    show($("enroll-result"), error.message, true);
  }
});

$("recognize-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("recognize-image").files[0];
  const form = new FormData();
  form.append("image", file);
  addDetector(form);
  try {
    const answer = await call("POST", "recognize", form);
    drawFaces(file, answer);
    const names = answer.faces.map((face) => face.name || "unknown");
    const by = `(${answer.detection.detector})`;
    show($("recognize-result"), answer.faces.length ? `Found: ${names.join(", ")} ${by}.` : `No face found ${by}.`);
  } catch (error) {
    show($("recognize-result"), error.message, true);
  }
});

function drawFaces(file, answer) {
  const photo = $("photo");
  photo.replaceChildren();
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = "the recognized photo";
  photo.append(img);
  placeBoxes(photo, answer);
}

// Boxes are in pixels of the upload as displayed (after EXIF orientation), so they are placed in
// percent of the answer's image size, whatever size the browser shows the photo or video at.
function placeBoxes(container, answer) {
  for (const old of container.querySelectorAll(".face")) {
    old.remove();
  }
  const { width, height } = answer.image;
  for (const face of answer.faces) {
    const box = document.createElement("div");
    box.className = face.matched ? "face" : "face unknown";
    box.style.left = `${(100 * face.box.left) / width}%`;
    box.style.top = `${(100 * face.box.top) / height}%`;
    box.style.width = `${(100 * (face.box.right - face.box.left)) / width}%`;
    box.style.height = `${(100 * (face.box.bottom - face.box.top)) / height}%`;
    const label = document.createElement("span");
    label.textContent = face.matched ? `${face.name} (${face.distance.toFixed(2)})` : "unknown";
    box.append(label);
    container.append(box);
  }
}

let nextCursor = null;

async function refreshPeople(more) {
  const list = $("people-list");
  if (!more) {
    list.replaceChildren();
    nextCursor = null;
  }
  const query = nextCursor ? `?cursor=${encodeURIComponent(nextCursor)}` : "";
  try {
    const page = await call("GET", `people${query}`);
    for (const person of page.people) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.textContent = `${person.name} (${person.face_count})`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Delete";
      remove.dataset.name = person.name;
      remove.addEventListener("click", async () => {
        await call("DELETE", `people/${encodeURIComponent(person.name)}`);
        refreshPeople();
      });
      item.append(label, remove);
      list.append(item);
    }
    nextCursor = page.next;
    $("people-more").hidden = !nextCursor;
  } catch (error) {
    const item = document.createElement("li");
    item.textContent = error.message;
    item.className = "error";
    list.append(item);
  }
}

$("people-refresh").addEventListener("click", () => refreshPeople());
$("people-more").addEventListener("click", () => refreshPeople(true));
if (!cameraOnly) {
  refreshPeople();
}

// The check-in camera: one frame about twice a second, never two requests at once, recognized in the
// collection; names are drawn over the video, and everyone recognized is listed with when they came.
const CAMERA_INTERVAL_MS = 500;
const CAMERA_SIDE_PX = 800; // frames are sent at most this long: faces at a door are large, uploads stay small
let cameraStream = null;
let cameraTimer = null;
let framesRecognized = 0;
const seen = new Map(); // name -> { first, frames }

$("camera-start").addEventListener("click", async () => {
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
  } catch (error) {
    show($("camera-status"), `No camera: ${error.message}`, true);
    return;
  }
  const video = $("camera");
  video.srcObject = cameraStream;
  await video.play();
  $("camera-start").disabled = true;
  $("camera-stop").disabled = false;
  framesRecognized = 0;
  cameraTimer = setTimeout(recognizeFrame, 0);
});

$("camera-stop").addEventListener("click", () => {
  clearTimeout(cameraTimer);
  for (const track of cameraStream ? cameraStream.getTracks() : []) {
    track.stop();
  }
  cameraStream = null;
  $("camera").srcObject = null;
  $("camera-start").disabled = false;
  $("camera-stop").disabled = true;
  show($("camera-status"), `Stopped after ${framesRecognized} frames.`);
});

async function recognizeFrame() {
  const video = $("camera");
  const stream = cameraStream;  // an answer that comes back after Stop (or a new Start) is dropped
  const started = performance.now();
  if (video.videoWidth) {
    const scale = Math.min(1, CAMERA_SIDE_PX / Math.max(video.videoWidth, video.videoHeight));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    const form = new FormData();
    form.append("image", frame, "frame.jpg");
    addDetector(form);
    try {
      const answer = await call("POST", "recognize", form);
      if (cameraStream !== stream) {
        return;
      }
      framesRecognized += 1;
      placeBoxes($("camera-view"), answer);
      noteSeen(answer.faces);
      show($("camera-status"), `${framesRecognized} frames recognized; ${answer.faces.length} face(s) in the last.`);
    } catch (error) {
      if (cameraStream !== stream) {
        return;
      }
      show($("camera-status"), error.message, true);
    }
  }
  if (cameraStream === stream && stream) {
    cameraTimer = setTimeout(recognizeFrame, Math.max(0, CAMERA_INTERVAL_MS - (performance.now() - started)));
  }
}

function noteSeen(faces) {
  const now = new Date();
  for (const face of faces.filter((f) => f.matched)) {
    const entry = seen.get(face.name) || { first: now, frames: 0 };
    entry.frames += 1;
    seen.set(face.name, entry);
  }
  const items = [...seen].sort(([, a], [, b]) => a.first - b.first).map(([name, entry]) => {
    const item = document.createElement("li");
    item.dataset.name = name;
    item.textContent = `${name}: since ${entry.first.toLocaleTimeString()}, in ${entry.frames} frame(s)`;
    return item;
  });
  $("seen-list").replaceChildren(...items);
}
