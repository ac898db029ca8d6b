#!/usr/bin/env bash
# Add an unpacked bundle (dist/medviewer or the extracted tarball) to the desktop's
# application menu for the current user: the .desktop entry with an absolute Exec path
# and the icon, under ~/.local/share (XDG_DATA_HOME). Undo with --remove.
#
#   bash medviewer/install-desktop-entry.sh [--remove]      (from inside the bundle folder)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
ENTRY="$DATA/applications/medviewer.desktop"
ICON="$DATA/icons/hicolor/256x256/apps/medviewer.png"

if [ "${1:-}" = "--remove" ]; then
    rm -f "$ENTRY" "$ICON"
    echo "removed $ENTRY and $ICON"
    exit 0
fi
if [ ! -x "$HERE/medviewer" ] || [ ! -f "$HERE/medviewer.desktop" ]; then
    echo "install-desktop-entry.sh: run the copy inside the bundle folder (next to the medviewer program)" >&2
    exit 1
fi
mkdir -p "$(dirname "$ENTRY")" "$(dirname "$ICON")"
install -m 644 "$HERE/medviewer.png" "$ICON"
sed "s|^Exec=medviewer|Exec=\"$HERE/medviewer\"|" "$HERE/medviewer.desktop" > "$ENTRY.partial"
mv "$ENTRY.partial" "$ENTRY"
command -v update-desktop-database >/dev/null && update-desktop-database "$DATA/applications" || true
echo "installed $ENTRY (runs $HERE/medviewer)"
