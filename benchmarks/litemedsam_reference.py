"""Compare medviewer's LiteMedSAM path with the reference LiteMedSAM inference on real CT.

Data: the SAM-Med2D demo set (5 windowed CT slices as PNG, 30 organ masks). Prompt: each
mask's bounding box (optionally enlarged). Reports each path's mean Dice against the ground
truth, their difference (the issue requires <= 0.01) and timings.

    python -m benchmarks.litemedsam_reference [--data DIR] [--enlarge 0 5]

Results go to benchmarks/results/litemedsam_reference.json.

The reference pipeline lives in tests/test_ai_litemedsam.py so the test and this report run
the very same code.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # also runnable as a plain script
    sys.path.insert(0, str(REPO))

from benchmarks.common import save_result, summarize  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/dev/sam_med2d/data_demo")


def load_reference_module():
    path = REPO / "tests" / "test_ai_litemedsam.py"
    spec = importlib.util.spec_from_file_location("litemedsam_reference_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bounding_box(mask: np.ndarray, enlarge: int) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(mask)
    height, width = mask.shape
    return (
        max(int(columns.min()) - enlarge, 0),
        max(int(rows.min()) - enlarge, 0),
        min(int(columns.max()) + enlarge, width - 1),
        min(int(rows.max()) + enlarge, height - 1),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ and masks/")
    parser.add_argument("--enlarge", type=int, nargs="+", default=[0, 5], help="pixels added around each box")
    args = parser.parse_args(argv)
    if not (args.data / "images").is_dir():
        print(f"no images/ folder in {args.data}", file=sys.stderr)
        return 2

    reference = load_reference_module()
    from medviewer.ai.api import Prompt2D
    from medviewer.ai.engine import Engine
    from medviewer.ai.registry import ModelRegistry

    network = reference.reference_network()
    engine = Engine(ModelRegistry(user_dirs=[], entry_points=[]), device="cpu")
    started = time.perf_counter()
    engine.load_model("litemedsam").get(120)
    print(f"LiteMedSAM load on the engine: {time.perf_counter() - started:.2f} s (torch already imported)")

    cases = []
    for image_path in sorted((args.data / "images").glob("*.png")):
        image_3c = np.asarray(Image.open(image_path).convert("RGB"))
        masks = sorted((args.data / "masks").glob(f"{image_path.stem}_*.png"))
        truths = [np.asarray(Image.open(p)) > 0 for p in masks]
        if not truths:
            print(f"skipping {image_path.name}: no masks")
            continue
        cases.append((image_path.stem, image_3c, [p.stem for p in masks], truths))
    print(f"{len(cases)} images with masks, {sum(len(c[3]) for c in cases)} masks from {args.data}\n")

    results = {"data": str(args.data), "images": len(cases), "masks": sum(len(c[3]) for c in cases), "runs": []}
    try:
        for enlarge in args.enlarge:
            app_scores, reference_scores, agreement = [], [], []
            encode_seconds, decode_seconds, reference_seconds, app_seconds = [], [], [], []
            print(f"== boxes = mask bounding box enlarged by {enlarge} px ==")
            for _stem, image_3c, names, truths in cases:
                boxes = [bounding_box(t, enlarge) for t in truths]
                t0 = time.perf_counter()
                expected = reference.reference_segment(network, image_3c, boxes)
                reference_seconds.append(time.perf_counter() - t0)
                engine.cache.clear()
                slice_2d = image_3c[:, :, 0]  # the PNGs are grey: three equal channels
                t0 = time.perf_counter()
                embedding = engine.encode("litemedsam", slice_2d, 0, 0, window=(0, 255)).get(120)
                encode_seconds.append(time.perf_counter() - t0)
                predictions = []
                for box in boxes:
                    t1 = time.perf_counter()
                    predictions.append(engine.decode("litemedsam", embedding, Prompt2D(box=box)).get(120).mask)
                    decode_seconds.append(time.perf_counter() - t1)
                app_seconds.append(time.perf_counter() - t0)
                for name, truth, mine, theirs in zip(names, truths, predictions, expected, strict=True):
                    app_scores.append(reference.dice(mine, truth))
                    reference_scores.append(reference.dice(theirs, truth))
                    agreement.append(reference.dice(mine, theirs))
                    print(
                        f"  {name:45s} app {app_scores[-1]:.4f}  reference {reference_scores[-1]:.4f}"
                        f"  app-vs-reference {agreement[-1]:.4f}"
                    )
            app_mean, reference_mean = float(np.mean(app_scores)), float(np.mean(reference_scores))
            run = {
                "box_enlarged_px": enlarge,
                "mean_dice_app": app_mean,
                "mean_dice_reference": reference_mean,
                "dice_difference_app_minus_reference": app_mean - reference_mean,
                "lowest_mask_dice_app_vs_reference": float(min(agreement)),
                "app_encode": summarize(encode_seconds),
                "app_decode_per_box": summarize(decode_seconds),
                "time_per_image_ratio_app_vs_reference": float(np.sum(app_seconds) / np.sum(reference_seconds)),
            }
            results["runs"].append(run)
            print(
                f"  mean Dice vs ground truth: app {app_mean:.4f}, reference {reference_mean:.4f}, "
                f"difference {app_mean - reference_mean:+.4f} ({len(app_scores)} masks; target |difference| <= 0.01)"
            )
            print(f"  lowest app-vs-reference mask Dice: {min(agreement):.4f}")
            print(
                f"  app timing: encode median {run['app_encode']['median_s']:.2f} s/slice, decode median "
                f"{1000 * run['app_decode_per_box']['median_s']:.0f} ms/box (engine round trip); "
                f"time per image {run['time_per_image_ratio_app_vs_reference']:.2f}x the reference's batched call\n"
            )
    finally:
        engine.shutdown()
    path = save_result("litemedsam_reference", results)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
