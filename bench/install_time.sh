#!/usr/bin/env bash
# Clean-install time of requirements.txt into a fresh virtualenv with pip's cache emptied, and,
# with --compile-dlib, the time to build dlib from source instead (what the dlib-bin wheel saves);
# with --source-build, README's source-build recipe (OpenBLAS from apt, DLIB_* and CMAKE_BUILD_PARALLEL_LEVEL=1),
# then bench/dlib_speed.py with that dlib and with the default, side by side.
# Usage: bench/install_time.sh [--compile-dlib | --source-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python="${PYTHON:-python3.11}"

timed_build() {  # timed_build LABEL LOG COMMAND...: run COMMAND, print its time and peak memory
    local label="$1" log="$2"; shift 2
    local start end peak_kb
    start=$(date +%s.%N)
    /usr/bin/time -v "$@" > "$log" 2>&1 || { tail -20 "$log"; exit 1; }
    end=$(date +%s.%N)
    peak_kb=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
    printf '%s: %.0f s, peak RSS of the largest process %s MB\n' "$label" "$(echo "$end - $start" | bc)" \
        "$((peak_kb / 1024))"
}

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
    timed_build "dlib compile from source" "$scratch/compile.log" \
        "$scratch/compile/bin/pip" install --no-cache-dir --no-binary dlib dlib==20.0.0
fi

if [ "${1:-}" = "--source-build" ]; then
    echo "==> the source-build recipe: the Aptfile's lines, then dlib 20.0.1 compiled with BLAS, one job"
    if ! dpkg -s libopenblas-dev liblapack-dev >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev liblapack-dev
    fi
    "$python" -m venv "$scratch/source"
    "$scratch/source/bin/pip" install --quiet --no-cache-dir numpy==2.3.5 pillow==12.0.0 face-recognition-models==0.3.0 \
        setuptools==80.9.0 2>/dev/null
    CMAKE_BUILD_PARALLEL_LEVEL=1 DLIB_USE_BLAS=ON DLIB_USE_LAPACK=ON DLIB_NO_GUI_SUPPORT=ON \
        timed_build "dlib 20.0.1 source build (BLAS, 1 job)" "$scratch/source.log" \
        "$scratch/source/bin/pip" install --no-cache-dir --no-binary dlib dlib==20.0.1
    grep -E "Enabling (AVX|SSE4)|Found (BLAS|LAPACK)|Using (BLAS|LAPACK)|BLAS library" "$scratch/source.log" | sort -u || true
    echo "--- the source-built dlib"
    OPENBLAS_NUM_THREADS=1 "$scratch/source/bin/python" "$ROOT/bench/dlib_speed.py"
    echo "--- the default (dlib-bin wheel, and faceapi's encoder)"
    OPENBLAS_NUM_THREADS=1 "$ROOT/.venv/bin/python" "$ROOT/bench/dlib_speed.py"
fi
