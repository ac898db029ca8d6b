"""Run every benchmark in its own process (``make bench``); GUI ones under Xvfb when headless.

Each benchmark module exposes ``main()`` and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Benchmarks that open Qt/VTK windows and need a display.
NEEDS_DISPLAY = {"bench_slice_render", "bench_gui_responsiveness"}


def discover() -> list[str]:
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem.startswith("bench_"))
    if (ROOT / "benchmarks" / "litemedsam_reference.py").exists():
        names.append("litemedsam_reference")
    return names


def command_for(name: str) -> list[str]:
    command = [sys.executable, "-m", f"benchmarks.{name}"]
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if name in NEEDS_DISPLAY and headless and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *command]
    return command


def main(argv: list[str] | None = None) -> int:
    selected = list(argv if argv is not None else sys.argv[1:]) or discover()
    failures = []
    for name in selected:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(command_for(name), cwd=ROOT)
        print(f"   ({time.perf_counter() - start:.0f} s, exit {result.returncode})", flush=True)
        if result.returncode != 0:
            failures.append(name)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("results in benchmarks/results/; copy the figures into docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
