"""Run every benchmark in its own process (``make bench``); GUI ones under Xvfb when headless.

Each benchmark module exposes ``main()`` and writes benchmarks/results/<name>.json.
Benchmarks with a reduced mode get their reduced arguments (``QUICK_ARGUMENTS``, so
``make bench`` stays within minutes on a 2-core CPU); ``--full`` runs them in full. Names
pick scripts (any module in benchmarks/, e.g. ``fuzz_readers``). A summary table ends the
run: wall and CPU seconds of each benchmark (CPU time shows the work itself when other jobs
load the machine) and its headline figures.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Benchmarks that open Qt/VTK windows and need a display.
NEEDS_DISPLAY = {"bench_slice_render", "bench_ai_gui"}
#: Arguments for the reduced run ``make bench`` does (``--full`` drops them). The reference
#: comparison keeps only the enlarged boxes: bench_accuracy already compares the app with the
#: reference on the exact ground-truth boxes, mask by mask.
QUICK_ARGUMENTS = {
    "bench_accuracy": ["--quick"],
    "bench_encode_decode": ["--quick"],
    "bench_ai_gui": ["--quick"],
    "litemedsam_reference": ["--enlarge", "5"],
}


def discover() -> list[str]:
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem.startswith("bench_"))
    if (ROOT / "benchmarks" / "litemedsam_reference.py").exists():
        names.append("litemedsam_reference")
    return names


def command_for(name: str, quick: bool = False) -> list[str]:
    command = [sys.executable, "-m", f"benchmarks.{name}"]
    if quick:
        command += QUICK_ARGUMENTS.get(name, [])
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if name in NEEDS_DISPLAY and headless and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *command]
    return command


def _result_file(name: str) -> Path:
    return ROOT / "benchmarks" / "results" / f"{name.removeprefix('bench_')}.json"


def _accuracy_headline(result: dict) -> str:
    parts = []
    for run in result.get("runs", []):
        if run["model"] == "litemedsam" and run["prompt"].startswith("box") and run["dataset"] == "SAM-Med2D demo":
            first, last = run["by_click"][0], run["by_click"][-1]
            later = f"click {last['round']}: {last['dice']:.3f}"
            parts.append(f"LiteMedSAM box on SAM-Med2D demo: Dice {first['dice']:.3f} ({later})")
    agreement = result.get("app_vs_reference")
    if agreement:
        parts.append(f"app vs reference: max per-mask Dice difference {agreement['largest_per_mask_difference']:.1g}")
    parts.append(f"{len(result.get('runs', []))} runs")
    return "; ".join(parts)


def _encode_decode_headline(result: dict) -> str:
    ratios = result["ratios"]
    return f"app/bare encode {ratios['encode']:.2f}x (<=1.1), decode {ratios['decode']:.2f}x (<=1.3)"


def _reference_headline(result: dict) -> str:
    return "; ".join(
        f"box +{run['box_enlarged_px']} px: Dice app {run['mean_dice_app']:.4f} vs reference "
        f"{run['mean_dice_reference']:.4f}"
        for run in result["runs"]
    )


#: One line of headline figures per benchmark that has a known result layout.
HEADLINES = {
    "bench_accuracy": _accuracy_headline,
    "bench_encode_decode": _encode_decode_headline,
    "litemedsam_reference": _reference_headline,
}


def headline(name: str) -> str:
    path = _result_file(name)
    if not path.is_file():
        return "(no result file)"
    extract = HEADLINES.get(name)
    if extract is None:
        return f"see {path.relative_to(ROOT)}"
    try:
        return extract(json.loads(path.read_text()))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unreadable result ({type(exc).__name__})"


def _children_cpu_seconds() -> float:
    """User + system CPU of every finished child process (xvfb-run's children included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def print_summary(rows: list[tuple[str, float, float, int]]) -> None:
    width = max(len(name) for name, *_ in rows)
    print(f"\n{'benchmark':{width}}  {'wall s':>6}  {'CPU s':>6}  exit  headline")
    for name, seconds, cpu, code in rows:
        print(f"{name:{width}}  {seconds:6.0f}  {cpu:6.0f}  {code:4d}  {headline(name) if code == 0 else 'FAILED'}")
    wall, cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':{width}}  {wall:6.0f}  {cpu:6.0f}")


def main(argv: list[str] | None = None) -> int:
    arguments = list(argv if argv is not None else sys.argv[1:])
    if {"-h", "--help"} & set(arguments):
        print(f"usage: python -m benchmarks.run_all [--full] [NAME ...]\n\n{__doc__}")
        print("benchmarks: " + ", ".join(discover()))
        return 0
    quick = "--full" not in arguments
    selected = [a for a in arguments if a not in ("--quick", "--full")] or discover()
    unknown = [name for name in selected if not (ROOT / "benchmarks" / f"{name}.py").is_file()]
    if unknown:
        print(f"no benchmark {', '.join(unknown)}; the suite: {', '.join(discover())}", file=sys.stderr)
        return 2
    failures = []
    rows = []
    for name in selected:
        print(f"== {name}", flush=True)
        start, cpu_before = time.perf_counter(), _children_cpu_seconds()
        result = subprocess.run(command_for(name, quick), check=False, cwd=ROOT)
        seconds, cpu = time.perf_counter() - start, _children_cpu_seconds() - cpu_before
        print(f"   ({seconds:.0f} s wall, {cpu:.0f} s CPU, exit {result.returncode})", flush=True)
        rows.append((name, seconds, cpu, result.returncode))
        if result.returncode != 0:
            failures.append(name)
    print_summary(rows)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("results in benchmarks/results/; copy the figures into docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
