#!/usr/bin/env bash
# Clean-install time of requirements.txt into a fresh virtualenv with pip's cache emptied, and,
# with --compile-dlib, the time to build dlib from source instead (what the dlib-bin wheel saves).
# Usage: bench/install_time.sh [--compile-dlib]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python="${PYTHON:-python3.11}"

echo "==> clean install of requirements.txt (pip cache emptied)"
"$python" -m pip cache purge >/dev/null 2>&1 || true
"$python" -m venv "$scratch/venv"
start=$(date +%s.%N)
"$scratch/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check -r "$ROOT/requirements.txt" 2>/dev/null
end=$(date +%s.%N)
printf 'requirements.txt clean install: %.1f s, venv size %s\n' "$(echo "$end - $start" | bc)" "$(du -sh "$scratch/venv" | cut -f1)"

if [ "${1:-}" = "--compile-dlib" ]; then
    echo "==> compiling dlib 20.0.0 from source (no wheel), as a plain 'pip install dlib' does"
    "$python" -m venv "$scratch/compile"
    "$scratch/compile/bin/pip" install --quiet --no-cache-dir cmake 2>/dev/null || true
    start=$(date +%s.%N)
    /usr/bin/time -v "$scratch/compile/bin/pip" install --no-cache-dir --no-binary dlib dlib==20.0.0 \
        > "$scratch/compile.log" 2>&1 || { tail -20 "$scratch/compile.log"; exit 1; }
    end=$(date +%s.%N)
    peak_kb=$(grep 'Maximum resident set size' "$scratch/compile.log" | awk '{print $NF}')
    printf 'dlib compile from source: %.0f s, peak RSS of the largest process %s MB\n' \
        "$(echo "$end - $start" | bc)" "$((peak_kb / 1024))"
fi
