#!/usr/bin/env bash
# Create .venv with the pinned stack (requirements.txt) and the synsym package.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
echo "install: $(.venv/bin/python --version), synsym $(.venv/bin/python -c 'import synsym; print(synsym.__version__)') in .venv"
