# Sourced by scripts/serve and scripts/test: make .venv and install pinned requirements into it.
# Re-installs only when a requirements file changed (a stamp keeps their hash).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACEAPI_VENV:-$ROOT/.venv}"

ensure_venv() {  # ensure_venv REQUIREMENTS_FILE [EXTRA_PIP_ARGS...]
    local requirements="$1"; shift
    local python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null 2>&1 || python=python3
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV with $($python --version)"
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.requirements-$(basename "$requirements").sha256"
    local want
    want="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "==> installing $(basename "$requirements") into $VENV (prebuilt wheels, no compiler: a minute or two)"
        # From the root: requirements.txt installs this project with "-e .". pip shows each package as it
        # comes; only its notes on index locations it cannot use are left out.
        (cd "$ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
            -r "$requirements" "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; })
        echo "$want" > "$stamp"
    fi
}
