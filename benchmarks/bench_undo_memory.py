"""Undo memory: 200 brush strokes on a 512x512x300 scan stay within the history's byte budget.

Paints a mix of circle strokes on axial slices and sphere strokes through the volume (each
stroke a drag of several mouse moves, one undo step), records the bytes the history holds
after every stroke against its budget (default 10 % of the scan's bytes), then undoes every
retained step and redoes them, checking the label map against checksums taken while
painting. A second run with a tight budget shows the oldest steps being dropped instead of
the budget being exceeded. Compared with a whole-label-map copy per step, as naive undo does.
"""

from __future__ import annotations

import argparse
import resource
import time
import zlib

import numpy as np

from benchmarks.common import save_result, summarize
from medviewer.model import EditHistory, Geometry, LabelMap, SegmentEditor, SegmentTable, SlicePlane, Volume
from medviewer.model.history import default_budget
from medviewer.tools.brush import BrushShape, BrushTool


def checksum(array: np.ndarray) -> int:
    return zlib.crc32(memoryview(array).cast("B"))


def run(shape, strokes: int, budget_bytes: int | None, seed: int = 0) -> dict:
    geometry = Geometry(shape, (0.7, 0.7, 1.0))
    volume = Volume(np.zeros(shape, np.int16), geometry)
    labelmap = LabelMap(geometry)
    budget = budget_bytes if budget_bytes is not None else default_budget(volume.nbytes)
    editor = SegmentEditor(labelmap, SegmentTable(), volume, EditHistory(budget))
    for name in ("liver", "spleen", "tumor", "kidney"):
        editor.create_segment(name)
    editor.history.clear()
    rng = np.random.default_rng(seed)
    sums = [checksum(labelmap.array)]
    held, stroke_times, voxels = [], [], []
    nz, ny, nx = shape
    previous: tuple | None = None
    for n in range(strokes):
        erase = n % 10 == 9 and previous is not None
        if erase:  # rub out part of the previous stroke, as users do
            label, plane, path, radius, shape_kind = previous
            path = path[: max(2, len(path) // 2)]
            radius *= 0.7
        else:
            label = int(rng.integers(1, 5))
            sphere = n % 4 == 3
            shape_kind = BrushShape.SPHERE if sphere else BrushShape.CIRCLE
            radius = float(rng.uniform(8, 25) if sphere else rng.uniform(4, 20))
            k = int(rng.integers(0, nz))
            plane = None if sphere else SlicePlane(0, k)
            position = np.array([rng.uniform(0, nx), rng.uniform(0, ny), k], float)
            path = [position.copy()]
            for _ in range(int(rng.integers(10, 40))):
                position[:2] = np.clip(position[:2] + rng.normal(0, 10, 2), 0, [nx - 1, ny - 1])
                if sphere:
                    position[2] = np.clip(position[2] + rng.normal(0, 2), 0, nz - 1)
                path.append(position.copy())
            previous = (label, plane, path, radius, shape_kind)
        editor.policy.active_label = label
        brush = BrushTool(editor, radius_mm=radius, shape=shape_kind, erase=erase)
        start = time.perf_counter()
        brush.press(geometry.index_to_physical(path[0]), plane)
        for point in path[1:]:
            brush.move(geometry.index_to_physical(point))
        command = brush.release()
        stroke_times.append(time.perf_counter() - start)
        voxels.append(command.voxels_changed if command else 0)
        held.append(editor.history.nbytes)
        if command is not None:  # a stroke that changed nothing is not an undo step
            sums.append(checksum(labelmap.array))
    retained = editor.history.undo_count
    final = sums[-1]
    start = time.perf_counter()
    while editor.history.can_undo:
        editor.undo()
    undo_s = time.perf_counter() - start
    undo_ok = checksum(labelmap.array) == sums[len(sums) - 1 - retained]
    start = time.perf_counter()
    while editor.history.can_redo:
        editor.redo()
    redo_s = time.perf_counter() - start
    redo_ok = checksum(labelmap.array) == final
    naive = labelmap.array.nbytes * strokes
    return {
        "budget_bytes": budget,
        "max_history_bytes": max(held),
        "final_history_bytes": held[-1],
        "within_budget": max(held) <= budget,
        "strokes": strokes,
        "steps_retained": retained,
        "steps_dropped": editor.history.dropped,
        "voxels_changed_per_stroke_median": float(np.median(voxels)),
        "voxels_changed_total": int(np.sum(voxels)),
        "bytes_per_retained_step_mean": held[-1] / max(retained, 1),
        "stroke_time": summarize(stroke_times),
        "undo_all_retained_s": undo_s,
        "redo_all_s": redo_s,
        "undo_restores_exact_array": bool(undo_ok),
        "redo_restores_exact_array": bool(redo_ok),
        "naive_full_copy_bytes": naive,
        "history_vs_naive": held[-1] / naive,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--strokes", type=int, default=200)
    parser.add_argument("--tight-budget-mb", type=float, default=0.25)
    args = parser.parse_args(argv)
    shape = (args.slices, args.size, args.size)
    default = run(shape, args.strokes, None)
    tight = run(shape, args.strokes, int(args.tight_budget_mb * 2**20), seed=1)
    result = {
        "case": f"{args.strokes} brush strokes on {args.size}x{args.size}x{args.slices} (int16 scan, uint8 labels)",
        "default_budget": default,
        "tight_budget": tight,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    path = save_result("undo_memory", result)
    for name in ("default_budget", "tight_budget"):
        r = result[name]
        print(
            f"{name}: budget {r['budget_bytes'] / 2**20:.2f} MiB, max held {r['max_history_bytes'] / 2**20:.2f} MiB "
            f"({'within' if r['within_budget'] else 'OVER'}), {r['steps_retained']} steps kept, "
            f"{r['steps_dropped']} dropped, stroke median {r['stroke_time']['median_s'] * 1000:.0f} ms, "
            f"undo all {r['undo_all_retained_s']:.2f} s, exact undo/redo {r['undo_restores_exact_array']}/"
            f"{r['redo_restores_exact_array']}"
        )
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB; saved {path}")
    return result


if __name__ == "__main__":
    main()
