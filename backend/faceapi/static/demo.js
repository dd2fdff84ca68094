// The demo page: enroll, recognize (boxes and names drawn over the photo), list and delete people.
// Plain JavaScript against the service's own API; the API key, when given, goes in X-API-Key.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("faceapi-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("faceapi-key", keyInput.value));

async function call(method, path, body) {
  const headers = keyInput.value ? { "X-API-Key": keyInput.value } : {};
  const response = await fetch(path, { method, headers, body });
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

// Boxes are in pixels of the upload as displayed (after EXIF orientation), so they are placed in
// percent of the answer's image size, whatever size the browser shows the photo at.
function drawFaces(file, answer) {
  const photo = $("photo");
  photo.replaceChildren();
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = "the recognized photo";
  photo.append(img);
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
    photo.append(box);
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
refreshPeople();
