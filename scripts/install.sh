#!/usr/bin/env bash
# Installs odmflow on a fresh Debian/Ubuntu machine: system libraries, then a virtual environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# libusb-1.0-0: open3d needs it at import time; libgomp1: OpenMP for pycolmap/open3d;
# chromium: the browser tests drive it through Playwright (no browser download); nodejs/npm: the Khronos glTF
# validator that checks the GLB models; poppler-utils: the report's PDF is rendered to check it.
PACKAGES="libusb-1.0-0 libgomp1 chromium poppler-utils"
# Debian's npm conflicts with a NodeSource nodejs, which brings its own npm: only where there is none.
if ! command -v npm >/dev/null 2>&1; then PACKAGES="$PACKAGES nodejs npm"; fi
if ! python3 -c "import venv, ensurepip" 2>/dev/null; then PACKAGES="$PACKAGES python3-venv"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"odmflow needs Python 3.11 or newer; python3 is {sys.version.split()[0]}")
PY
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/odmflow --help >/dev/null
npm install --silent --no-audit --no-fund --prefix scripts/gltf-validator >/dev/null
echo "odmflow installed: run .venv/bin/odmflow --help"
