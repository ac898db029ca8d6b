"""Slice propagation with LiteMedSAM on the demo phantom, and SAM-Med3D's cost per click.

* Propagation: a box on the middle slice of an organ (ground-truth box + 2 px) -> accepted
  LiteMedSAM mask -> propagated up and down; then the 3D-box mode with the organ's ground-truth
  box (same slices, from the cache). Reports whole-organ Dice, the slice range against the
  truth, why each direction stopped, and seconds per slice.
* SAM-Med3D (full-size architecture, random weights: only the timing means anything): seconds
  to prepare and encode the 128^3 crop, and per further click.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save_result

ORGANS = {"liver": 1, "spleen": 2}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(int(a.sum()) + int(b.sum()), 1))


def organ_box(mask: np.ndarray) -> tuple[int, ...]:
    zs, ys, xs = (np.flatnonzero(mask.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1)))
    return (int(xs[0]), int(ys[0]), int(zs[0]), int(xs[-1]), int(ys[-1]), int(zs[-1]))


def bench_propagation(organs: list[str], shape, spacing) -> dict:
    from medviewer.ai.api import Prompt2D
    from medviewer.ai.propagation import (
        ModelSliceSegmenter,
        mask_rect,
        propagate_from_mask,
        rects_for_box3d,
        segment_box,
    )
    from medviewer.ai.registry import ModelRegistry
    from medviewer.demo import make_demo_case
    from medviewer.jobs import JobControl

    volume, labels, _ = make_demo_case(shape=shape, spacing=spacing)
    model = ModelRegistry(user_dirs=[], entry_points=[]).create("litemedsam")
    model.load(None, "cpu")
    results = {}
    for name in organs:
        organ = labels.array == ORGANS[name]
        present = np.flatnonzero(organ.any(axis=(1, 2)))
        start = int((present[0] + present[-1]) // 2)
        segmenter = ModelSliceSegmenter(model, volume, 0)
        x0, y0, x1, y1 = mask_rect(organ[start])
        began = time.perf_counter()
        seed = segmenter.segment(start, Prompt2D(box=(x0 - 2, y0 - 2, x1 + 2, y1 + 2)), JobControl()).mask
        propagated = propagate_from_mask(segmenter, start, seed)
        seconds = time.perf_counter() - began
        encodes = segmenter.encodes
        began = time.perf_counter()
        boxed = segment_box(segmenter, rects_for_box3d(organ_box(organ), 0))
        box_seconds = time.perf_counter() - began
        results[name] = {
            "truth_slices": [int(present[0]), int(present[-1])],
            "seed_slice_dice": dice(seed, organ[start]),
            "propagation_dice": dice(propagated.mask, organ),
            "propagation_slices": list(propagated.slice_range or ()),
            "stop_reasons": propagated.stop_reasons,
            "encodes": encodes,
            "seconds": seconds,
            "seconds_per_encoded_slice": seconds / max(encodes, 1),
            "box_mode_dice": dice(boxed.mask, organ),
            "box_mode_seconds_cached": box_seconds,
        }
        print(name, {k: v for k, v in results[name].items() if k != "stop_reasons"})
    return {"shape_zyx": list(shape), "spacing_xyz": list(spacing), "organs": results}


def bench_sam_med3d(clicks: int) -> dict:
    import sys

    import torch

    from medviewer.ai.api import Prompt3D
    from medviewer.ai.registry import ModelRegistry
    from medviewer.demo import make_demo_case

    registry = ModelRegistry(user_dirs=[], entry_points=[])
    plugin_class = registry.model_class("sam_med3d")
    network = sys.modules[plugin_class.__module__.rsplit(".", 1)[0] + ".network"]
    model = registry.create("sam_med3d")
    model._network = network.Sam3D().eval()  # random weights: timing only
    model.loaded = True
    volume, _, _ = make_demo_case()
    points = [(96.0, 96.0, 48.0)]
    began = time.perf_counter()
    model.predict_3d(volume.array, Prompt3D(points=tuple(points), labels=(1,)), geometry=volume.geometry, modality="CT")
    first = time.perf_counter() - began
    per_click = []
    for n in range(1, clicks):
        points.append((96.0 + 3 * n, 96.0, 48.0))
        began = time.perf_counter()
        model.predict_3d(
            volume.array,
            Prompt3D(points=tuple(points), labels=(1,) * len(points)),
            geometry=volume.geometry,
            modality="CT",
        )
        per_click.append(time.perf_counter() - began)
    return {
        "threads": torch.get_num_threads(),
        "first_click_seconds": first,
        "further_click_seconds_median": float(np.median(per_click)) if per_click else None,
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--organs", default="spleen", help="comma-separated: " + ", ".join(ORGANS))
    parser.add_argument("--clicks", type=int, default=4)
    parser.add_argument("--skip-sam-med3d", action="store_true")
    args = parser.parse_args(argv)
    result = {
        "propagation": bench_propagation(args.organs.split(","), (24, 96, 96), (3.2, 3.2, 8.0)),
        "sam_med3d_random_full_size": None if args.skip_sam_med3d else bench_sam_med3d(args.clicks),
    }
    path = save_result("propagation", result)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
