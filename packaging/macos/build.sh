#!/usr/bin/env bash
# Build dist/medviewer.app and a .dmg-free zip of it on macOS (arm64 or x86_64; run on
# that machine, PyInstaller does not cross-compile). Not built or tested by the project's
# CI: the recipe mirrors packaging/build_linux.sh, which is. See docs/packaging.md.
#
#   python3.11 -m venv .venv-build
#   .venv-build/bin/pip install ".[ai]" pyinstaller pillow
#   PYTHON=.venv-build/bin/python bash packaging/macos/build.sh
#
# PyPI's torch for macOS is the CPU/MPS build. Pillow lets PyInstaller turn
# resources/medviewer.png into the .icns icon. Signing and notarisation are left to the
# distributor: codesign --deep -s "Developer ID Application: ..." dist/medviewer.app
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv-build/bin/python}"
cd "$ROOT"
"$PYTHON" -m PyInstaller --noconfirm --clean --workpath build/pyinstaller --distpath dist packaging/medviewer.spec
VERSION="$("$PYTHON" -c "import importlib.metadata as m; print(m.version('medviewer'))")"
dist/medviewer.app/Contents/MacOS/medviewer --self-test
ditto -c -k --keepParent dist/medviewer.app "dist/medviewer-$VERSION-macos-$(uname -m).zip"
echo "wrote dist/medviewer-$VERSION-macos-$(uname -m).zip"
