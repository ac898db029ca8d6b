"""3D surface extraction: the demo case, a 512x512x300 label map, and what an edit costs.

Times the same code the 3D view runs on its worker thread (``_rebuild_surfaces``) for a
small brush edit, next to a from-scratch extraction of every label. Also measures the
longest stall a main thread sees while a full rebuild runs beside it (the 2D views'
event loop during surface recomputation).
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from benchmarks.common import save_result, summarize, time_calls
from medviewer.demo import make_demo_case
from medviewer.jobs import JobControl
from medviewer.model.events import Box
from medviewer.render.surfaces import extract_label_surfaces, extract_surfaces, fit_display_budget


def rebuild_after_edit(labels, geometry, known, box):
    """The 3D view's worker body for one edited box (imports Qt only for its module)."""
    from medviewer.ui.view3d import _rebuild_surfaces, _SurfaceWork

    return _rebuild_surfaces(
        JobControl(), labels=labels, geometry=geometry, work=_SurfaceWork(boxes=[box]),
        known_extents=dict(known.extents), known_counts=dict(known.voxel_counts), job_id=1, edit_count=1,
    )


def longest_main_thread_stall(work) -> tuple[float, float]:
    """Run ``work`` on a thread; return (its duration, the longest gap in a 2 ms main loop)."""
    done = threading.Event()
    elapsed = [0.0]

    def run():
        start = time.perf_counter()
        work()
        elapsed[0] = time.perf_counter() - start
        done.set()

    thread = threading.Thread(target=run)
    last = time.perf_counter()
    longest = 0.0
    thread.start()
    while not done.is_set():
        time.sleep(0.002)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    thread.join()
    return elapsed[0], longest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result: dict = {}

    _, demo_labels, _ = make_demo_case()
    samples = time_calls(lambda: extract_surfaces(demo_labels.array, demo_labels.geometry), args.repeats)
    result["demo_all_labels"] = {"shape_zyx": list(demo_labels.shape), **summarize(samples)}

    _, big, _ = make_demo_case(shape=(300, 512, 512), spacing=(0.7, 0.7, 1.0))
    labels, geometry = big.array, big.geometry
    full_samples = []
    known = None
    for _ in range(max(1, args.repeats - 1)):
        start = time.perf_counter()
        known = extract_label_surfaces(labels, geometry)
        full_samples.append(time.perf_counter() - start)
    triangles = sum(s.GetNumberOfPolys() for s in known.surfaces.values())
    result["big_all_labels"] = {"shape_zyx": list(labels.shape), "labels": len(known.surfaces), "triangles": triangles, **summarize(full_samples)}
    # What the 3D view adds on software OpenGL: decimating the shown copies to its budget.
    from medviewer.ui.view3d import SOFTWARE_TRIANGLE_BUDGET

    fit = time_calls(lambda: fit_display_budget(known, labels, geometry, SOFTWARE_TRIANGLE_BUDGET), args.repeats)
    shown = sum(s.GetNumberOfPolys() for s in fit_display_budget(known, labels, geometry, SOFTWARE_TRIANGLE_BUDGET).values())
    result["big_fit_to_display_budget"] = {"budget": SOFTWARE_TRIANGLE_BUDGET, "triangles_shown": shown, **summarize(fit)}

    # A new small segment painted with a brush (a 14-voxel ball) in the middle of the scan.
    z, y, x = np.ogrid[:14, :14, :14]
    ball = (z - 6.5) ** 2 + (y - 6.5) ** 2 + (x - 6.5) ** 2 <= 42
    offset = (150, 135, 295)  # anterior abdominal wall, clear of every organ
    box = Box(offset, tuple(o + 14 for o in offset))
    labels[box.slices][ball] = 9
    edit = time_calls(lambda: rebuild_after_edit(labels, geometry, known, box), args.repeats)
    rebuilt = rebuild_after_edit(labels, geometry, known, box).rebuilt
    cold = time_calls(lambda: extract_surfaces(labels, geometry, [9]), args.repeats)
    result["big_small_new_label"] = {
        "rebuilt_labels": sorted(rebuilt),
        "view_job": summarize(edit),
        "extract_surfaces_without_hints": summarize(cold),
    }

    # A brush touch on the liver, the largest organ: only the liver is rebuilt.
    liver_box = known.extents[1]
    centre = [(a + b) // 2 for a, b in zip(liver_box.start, liver_box.stop)]
    touch = Box((centre[0], centre[1], liver_box.start[2] - 3), (centre[0] + 6, centre[1] + 6, liver_box.start[2] + 3))
    labels[touch.slices] = 1
    liver = time_calls(lambda: rebuild_after_edit(labels, geometry, known, touch), args.repeats)
    result["big_liver_edit"] = {"rebuilt_labels": sorted(rebuild_after_edit(labels, geometry, known, touch).rebuilt), **summarize(liver)}

    duration, stall = longest_main_thread_stall(lambda: extract_label_surfaces(labels, geometry))
    result["main_thread_during_full_rebuild"] = {"rebuild_s": duration, "longest_stall_s": stall}

    path = save_result("surfaces", result)
    for key, value in result.items():
        print(key, value)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
