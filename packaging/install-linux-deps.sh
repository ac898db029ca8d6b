#!/usr/bin/env bash
# Installs the Debian/Ubuntu system libraries Qt 6 and VTK need, plus Xvfb for headless
# machines. Does nothing when everything is already there (so `make run` stays fast).
set -euo pipefail

PACKAGES=(
  xvfb xauth libegl1 libgl1 libegl-mesa0 libglx-mesa0 libgl1-mesa-dri libxcursor1
  libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
  libx11-xcb1 libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0
)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-linux-deps: not a Debian-based system; install Qt 6 / OpenGL / Xvfb libraries with your package manager" >&2
  exit 0
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-linux-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "install-linux-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
