#!/usr/bin/env bash
# Build the Linux bundle and run its self-test, as a user of the bundle would (not in CI:
# the build takes many minutes). Prints the build time, the bundle size and the self-test
# report; exits non-zero when the build or a self-test fails. Record the results in
# docs/packaging.md.
#
#   PYTHON=.venv/bin/python bash packaging/check_bundle.sh [--skip-build] [--no-gui]
#
# --skip-build checks an existing dist/medviewer. The bundle runs with a bare environment
# (no PYTHONPATH, no virtual environment) from a scratch folder, so it cannot borrow
# anything from the build machine's Python. The --gui self-test needs xvfb-run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${MEDVIEWER_PACKAGING_OUT:-$ROOT}"
APP="$OUT/dist/medviewer"
BUILD=1
GUI=1
for arg in "$@"; do
    case "$arg" in
        --skip-build) BUILD=0 ;;
        --no-gui) GUI=0 ;;
        *) echo "check_bundle.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

if [ "$BUILD" = 1 ]; then
    started=$(date +%s)
    bash "$ROOT/packaging/build_linux.sh" --no-archive
    echo "build time: $(( $(date +%s) - started )) s"
fi
if [ ! -x "$APP/medviewer" ]; then
    echo "check_bundle.sh: no bundle at $APP (build it first)" >&2
    exit 1
fi
echo "bundle size: $(du -sh "$APP" | cut -f1) in $(find "$APP" -type f | wc -l) files"

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
run_bare() {
    (cd "$SCRATCH" && env -i PATH=/usr/bin:/bin HOME="$SCRATCH" LANG=C.UTF-8 "$@")
}

echo "== $APP/medviewer --version"
run_bare "$APP/medviewer" --version
echo "== $APP/medviewer models"
run_bare "$APP/medviewer" models | grep -E '^[a-z]' || true
echo "== $APP/medviewer --self-test (no display)"
started=$(date +%s)
run_bare "$APP/medviewer" --self-test
echo "headless self-test: $(( $(date +%s) - started )) s wall"

if [ "$GUI" = 1 ]; then
    if ! command -v xvfb-run >/dev/null; then
        echo "check_bundle.sh: xvfb-run is missing (bash packaging/install-linux-deps.sh installs it)" >&2
        exit 1
    fi
    echo "== xvfb-run $APP/medviewer --self-test --gui"
    run_bare xvfb-run -a -s "-screen 0 1600x1000x24" "$APP/medviewer" --self-test --gui
fi
echo "bundle check passed"
