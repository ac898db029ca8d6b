"""Fuzz every file reader with mutated bytes of valid files, for a bounded time.

Each reader (DICOM, NIfTI, NIfTI.gz, NRRD, .seg.nrrd, DICOM SEG) gets hypothesis-generated
mutations of a small valid file: bit flips, extreme integers on header fields, edited
numbers in text headers, truncation, insertions and deletions. A reader must either load
the bytes or raise medviewer's typed :class:`MedViewerIOError`. Findings are:

- ``foreign``: any other exception escaped (a bug: the user would see a traceback);
- ``hang``: one read took longer than ``--timeout`` seconds;
- ``memory``: a read hit the address-space limit (a lying header was believed).

Usage: ``python -m benchmarks.fuzz_readers [--seconds 120] [--timeout 10]``; results go to
``benchmarks/results/fuzz_readers.json``; ``docs/robustness.md`` records what was found.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.common import save_result  # noqa: E402


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _limit_memory(extra_bytes: int) -> int:
    """Cap the address space at what the process uses now plus ``extra_bytes``."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[0])
    limit = pages * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    return limit


def fuzz_target(target, seconds: float, timeout: int, work: Path, findings: list, counts: Counter) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    from fuzz_support import mutations
    from medviewer.io.errors import MedViewerIOError

    stop_at = time.monotonic() + seconds
    path = work / f"fuzz{target.suffix}"
    seen: set[tuple[str, str]] = set()

    @settings(max_examples=10**6, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate], report_multiple_bugs=False)
    @given(mutations(target.seed))
    def run(data: bytes) -> None:
        if time.monotonic() > stop_at:
            raise _TimeUp()
        path.write_bytes(data)
        signal.alarm(timeout)
        started = time.monotonic()
        try:
            target.read(path)
            outcome = "loaded"
        except MedViewerIOError:
            outcome = "refused"
        except _Hang:
            outcome = "hang"
        except MemoryError:
            outcome = "memory"
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            outcome = "foreign"
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if "medviewer" in f.filename] or frames
            key = (type(exc).__name__, f"{Path(ours[-1].filename).name}:{ours[-1].lineno} "
                   f"(raised in {Path(frames[-1].filename).name}:{frames[-1].lineno})")
            if key not in seen:
                seen.add(key)
                findings.append({
                    "reader": target.name, "kind": "foreign", "exception": key[0], "where": key[1],
                    "message": str(exc).splitlines()[0][:200] if str(exc) else "", "size": len(data),
                })
        finally:
            signal.alarm(0)
        counts[outcome] += 1
        if outcome in ("hang", "memory"):
            findings.append({"reader": target.name, "kind": outcome, "size": len(data),
                             "seconds": round(time.monotonic() - started, 2)})

    try:
        run()
    except _TimeUp:  # findings are collected above, not raised: the only way out is the clock
        pass


class _TimeUp(Exception):
    """Ends a target's run when its share of the time is spent (not a finding)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="total fuzzing time (split over the readers)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one read may take before it is a hang")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="address space one read may add")
    parser.add_argument("--only", help="comma-separated reader names")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    from fuzz_support import build_targets

    signal.signal(signal.SIGALRM, _on_alarm)
    # ITK and VNL print every complaint to the C stderr; thousands of them drown the report.
    quiet = os.open(os.devnull, os.O_WRONLY)
    saved_stderr = os.dup(2)
    os.dup2(quiet, 2)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        targets = build_targets(work / "seeds")
        if args.only:
            wanted = set(args.only.split(","))
            targets = [t for t in targets if t.name in wanted]
        import highdicom  # noqa: F401  (loaded before the memory cap is measured)
        import SimpleITK

        SimpleITK.ProcessObject_SetGlobalWarningDisplay(False)  # "Analyze file is deprecated", ...

        limit = _limit_memory(int(args.memory_gb * 2**30))
        findings: list[dict] = []
        per_reader = {}
        for target in targets:
            counts: Counter = Counter()
            started = time.monotonic()
            fuzz_target(target, args.seconds / len(targets), args.timeout, work, findings, counts)
            per_reader[target.name] = {**counts, "seconds": round(time.monotonic() - started, 1)}
            print(f"{target.name:10} {dict(counts)}", flush=True)
    os.dup2(saved_stderr, 2)
    for finding in findings:
        print("FINDING", finding)
    result = {"seconds": args.seconds, "timeout_s": args.timeout, "address_space_limit_gb": round(limit / 2**30, 1),
              "readers": per_reader, "findings": findings}
    if not args.no_save:
        print("saved", save_result("fuzz_readers", result))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
