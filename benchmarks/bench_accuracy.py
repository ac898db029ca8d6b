"""Accuracy of the bundled models through ``medviewer evaluate`` (the CLI the users run).

Data (``/work/shared/data/dev``, see each folder's README.txt):

* SAM-Med2D demo: 5 windowed CT slices (PNG) with 30 organ masks (``<image>_<organ>.png``);
* pyradiomics: brain1/brain2 MR tumours, breast1 MR, a prostate phantom MR (labels 1, 7, 8, 9);
* dcmqi: 3 CT slices (DICOM) with liver, spine and heart label maps.

Runs: LiteMedSAM with the ground-truth box, then 4 corrective clicks (box kept, previous mask
fed back); LiteMedSAM with clicks only (it was trained on boxes: reported, not hidden); region
growing (the only bundled model that takes points and needs no weights; SAM / SAM-Med2D /
SAM-Med3D need checkpoint files that are not on this machine). Volumes are evaluated slice
by slice (every slice with the label; ``--quick``: the largest slice only, 3 clicks).
``--quick`` (what ``make bench`` runs) also leaves out LiteMedSAM with clicks only on the demo:
it restates a known negative (its point prompts were never trained: Dice near 0) at about a
sixth of the quick run's time.

Also checks the app against the reference LiteMedSAM pipeline on the same boxes (the code of
benchmarks/litemedsam_reference.py / tests/test_ai_litemedsam.py, reused): the per-mask
Dice of ``evaluate``'s first round must equal the reference's.

    python -m benchmarks.bench_accuracy [--quick] [--data DIR]

Results: benchmarks/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS_DIR, save_result  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/dev")


def evaluate(argv: list[str]) -> dict:
    """Run ``medviewer evaluate ... --json`` in this process and return its report."""
    from medviewer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["evaluate", *argv, "--device", "cpu", "--json"])
    if code != 0:
        raise RuntimeError(f"evaluate {' '.join(argv)} failed: {err.getvalue().strip()}")
    return json.loads(out.getvalue())


def volume_cases(data: Path) -> list[tuple[str, Path, Path]]:
    radiomics, dcmqi = data / "pyradiomics", data / "dcmqi"
    cases = [
        (f"pyradiomics {name}", radiomics / f"{name}_image.nrrd", radiomics / f"{name}_label.nrrd")
        for name in ("brain1", "brain2", "breast1")
    ]
    cases.append(
        ("pyradiomics prostate phantom", radiomics / "prostate_phantom_subvolume.nrrd",
         radiomics / "prostate_phantom_subvolume-label.nrrd")
    )
    cases.append(("dcmqi CT liver+spine", dcmqi / "ct-3slice", dcmqi / "liver_spine_seg.nrrd"))
    cases.append(("dcmqi CT heart", dcmqi / "ct-3slice", dcmqi / "heart_seg.nrrd"))
    return [c for c in cases if c[1].exists() and c[2].exists()]


def summary(report: dict) -> dict:
    objects = [o for c in report["cases"] for o in c["objects"]]
    return {
        "objects": len(objects),
        "by_click": [
            {k: m[k] for k in ("round", "dice", "nsd", "seconds_per_call")} for m in report["mean"]
        ],
        "seconds": report["seconds"],
    }


def print_run(title: str, result: dict) -> None:
    clicks = "  ".join(
        f"{m['round']}: {m['dice']:.3f}/{m['nsd']:.3f}" for m in result["by_click"]
    )
    print(f"  {title:44s} n={result['objects']:2d}  Dice/NSD by click  {clicks}  ({result['seconds']:.0f} s)")


def reference_agreement(data_demo: Path, box_report: dict) -> dict:
    """Reference LiteMedSAM on the very boxes ``evaluate`` used; per-mask Dice compared."""
    from PIL import Image

    from benchmarks.litemedsam_reference import load_reference_module
    from medviewer.ai.evaluation import bounding_box

    reference = load_reference_module()
    network = reference.reference_network()
    differences, app, ref = [], [], []
    for case in box_report["cases"]:
        image_3c = np.asarray(Image.open(case["image"]).convert("RGB"))
        truths = [np.asarray(Image.open(p)) > 0 for p in case["ground_truth"]]
        boxes = [tuple(int(v) for v in bounding_box(t)) for t in truths]
        predictions = reference.reference_segment(network, image_3c, boxes)
        for truth, prediction, result in zip(truths, predictions, case["objects"], strict=True):
            reference_dice = reference.dice(prediction, truth)
            app_dice = result["rounds"][0]["dice"]
            app.append(app_dice)
            ref.append(reference_dice)
            differences.append(abs(app_dice - reference_dice))
    return {
        "masks": len(app),
        "mean_dice_app_evaluate": float(np.mean(app)),
        "mean_dice_reference": float(np.mean(ref)),
        "largest_per_mask_difference": float(max(differences)),
    }


def kept_results(part: str, fresh: dict) -> dict:
    """The saved results of the part not being rerun, so ``--part`` updates one half."""
    path = RESULTS_DIR / "accuracy.json"
    if not path.is_file():
        return fresh
    saved = json.loads(path.read_text())
    keep_demo = part == "volumes"
    runs = [r for r in saved.get("runs", []) if (r["dataset"] == "SAM-Med2D demo") == keep_demo]
    merged = {**fresh, "runs": runs}
    if keep_demo and "app_vs_reference" in saved:
        merged["app_vs_reference"] = saved["app_vs_reference"]
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--quick", action="store_true",
        help="largest slice per label, 3 clicks, no LiteMedSAM clicks-only run on the demo",
    )
    parser.add_argument("--clicks", type=int, help="interaction rounds (default 5; 3 with --quick)")
    parser.add_argument(
        "--part", choices=("all", "demo", "volumes"), default="all",
        help="run only the SAM-Med2D demo or only the label maps; the other part's saved results are kept",
    )
    args = parser.parse_args(argv)
    demo = args.data / "sam_med2d" / "data_demo"
    if not demo.is_dir() and not (args.data / "pyradiomics").is_dir():
        print(f"no data under {args.data}: nothing to measure (needs the shared dev data)", file=sys.stderr)
        return 0
    if args.clicks is None:
        args.clicks = 3 if args.quick else 5
    clicks = str(args.clicks)
    slices = "largest" if args.quick else "all"
    results: dict = {"data": str(args.data), "clicks": args.clicks, "slices": slices, "runs": []}
    if args.part != "all":
        results = kept_results(args.part, results)
    started = time.perf_counter()

    def record(dataset: str, model: str, prompt: str, report: dict) -> None:
        result = {"dataset": dataset, "model": model, "prompt": prompt, "clicks": args.clicks, **summary(report)}
        if dataset != "SAM-Med2D demo":
            result["slices"] = slices
        results["runs"].append(result)
        print_run(f"{dataset}: {model} {prompt}", result)

    if demo.is_dir() and args.part in ("all", "demo"):
        print(f"== SAM-Med2D demo ({demo}), window 0..255 (the PNGs are already windowed)")
        common = [str(demo), "--window", "0,255", "--clicks", clicks]
        box_report = evaluate([*common, "--model", "litemedsam", "--prompt", "box"])
        record("SAM-Med2D demo", "litemedsam", "box + clicks", box_report)
        if not args.quick:
            record("SAM-Med2D demo", "litemedsam", "clicks only",
                   evaluate([*common, "--model", "litemedsam", "--prompt", "points"]))
        record("SAM-Med2D demo", "region_growing", "clicks only",
               evaluate([*common, "--model", "region_growing", "--prompt", "points"]))
        agreement = reference_agreement(demo, box_report)
        results["app_vs_reference"] = agreement
        print(
            f"  app (evaluate, first round) vs reference LiteMedSAM on the same {agreement['masks']} boxes: "
            f"mean Dice {agreement['mean_dice_app_evaluate']:.4f} vs {agreement['mean_dice_reference']:.4f}, "
            f"largest per-mask difference {agreement['largest_per_mask_difference']:.2e}"
        )

    cases = volume_cases(args.data) if args.part in ("all", "volumes") else []
    if cases:
        print(f"== label maps (pyradiomics, dcmqi), slice by slice: {slices} slices with the label")
    for dataset, image, labels in cases:
        common = [str(image), str(labels), "--clicks", clicks, "--slices", slices]
        record(dataset, "litemedsam", "box + clicks", evaluate([*common, "--model", "litemedsam", "--prompt", "box"]))
        record(dataset, "region_growing", "clicks only",
               evaluate([*common, "--model", "region_growing", "--prompt", "points"]))
    results["seconds"] = round(time.perf_counter() - started, 1)
    path = save_result("accuracy", results)
    print(f"saved {path} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
