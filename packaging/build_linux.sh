#!/usr/bin/env bash
# Build the self-contained Linux application folder dist/medviewer/ and, unless
# --no-archive is given, dist/medviewer-<version>-linux-<arch>.tar.gz.
#
#   PYTHON=.venv/bin/python bash packaging/build_linux.sh [--no-archive]
#
# PYTHON must have medviewer installed with the "ai" extra (CPU torch keeps the bundle
# small) plus pyinstaller. MEDVIEWER_PACKAGING_OUT moves build/ and dist/ elsewhere.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${MEDVIEWER_PACKAGING_OUT:-$ROOT}"
WORK="$OUT/build/pyinstaller"
DIST="$OUT/dist"
ARCHIVE=1
for arg in "$@"; do
    case "$arg" in
        --no-archive) ARCHIVE=0 ;;
        *) echo "build_linux.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "build_linux.sh: $PYTHON has no PyInstaller; install it with: $PYTHON -m pip install pyinstaller" >&2
    exit 1
fi
VERSION="$("$PYTHON" -c "import importlib.metadata as m; print(m.version('medviewer'))")"

cd "$ROOT"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --workpath "$WORK" --distpath "$DIST" packaging/medviewer.spec
APP="$DIST/medviewer"
install -m 644 packaging/linux/medviewer.desktop "$APP/medviewer.desktop"
install -m 644 resources/medviewer.png "$APP/medviewer.png"
install -m 755 packaging/linux/install-desktop-entry.sh "$APP/install-desktop-entry.sh"
echo "built $APP ($(du -sh "$APP" | cut -f1))"

if [ "$ARCHIVE" = 1 ]; then
    TARBALL="$DIST/medviewer-$VERSION-linux-$(uname -m).tar.gz"
    tar -C "$DIST" -czf "$TARBALL" medviewer
    echo "wrote $TARBALL ($(du -sh "$TARBALL" | cut -f1))"
fi
