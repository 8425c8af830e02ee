#!/bin/sh
# Build the one-file sipdiag binary with PyInstaller: dist/sipdiag (dist\sipdiag.exe on Windows).
# pjsua2's native extension and the libraries its wheel bundles (pjsua2_python.libs) go inside.
# Usage: packaging/build-onefile.sh [PYTHON]   (default python3; 3.10-3.12 for the pjsua2 wheel)
set -eu
cd "$(dirname "$0")/.."
python=${1:-python3}
venv=build/onefile-venv

"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q '.[packaging]'

"$venv/bin/pyinstaller" --noconfirm --clean --onefile --name sipdiag \
  --distpath dist --workpath build/pyinstaller --specpath build \
  --paths . \
  --collect-submodules checks --collect-submodules diag \
  --collect-all pjsua2 \
  --collect-data diag \
  packaging/pyinstaller/sipdiag_entry.py

echo "built: dist/sipdiag"
