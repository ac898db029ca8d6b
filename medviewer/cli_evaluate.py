"""``medviewer evaluate``: score a model plugin against ground truth with a simulated user.

The protocol (first prompt, corrective clicks, slice-wise 2D evaluation, Dice and NSD) lives
in :mod:`medviewer.ai.evaluation`; this module only finds the cases, prints and exits.

Cases:

* ``evaluate IMAGE GROUND_TRUTH``: one image (file or DICOM folder) and a label map on its grid.
* ``evaluate FOLDER`` (with ``images/`` plus ``labels/`` or ``masks/`` inside) or
  ``evaluate IMAGES_FOLDER LABELS_FOLDER``: every image file is paired by name. A ground-truth
  file with the same stem (``ct_01.nii.gz`` <-> ``ct_01.nrrd``) is a label map scored label by
  label; otherwise files named ``<stem>_<object>.<ext>`` are binary masks of one object each
  (the SAM-Med2D layout). A sub-folder of the images folder is a DICOM series (one series per
  sub-folder) named after the folder (``images/case_07/`` <-> ``labels/case_07.nii.gz``).
  Images without ground truth are listed and skipped.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medviewer.cli import AXES, EXIT_OK, _numbers, _progress_printer, checked_model

LABEL_FOLDERS = ("labels", "masks")


@dataclass
class Case:
    """One image and its ground truth: a label map, or several binary object masks."""

    image: Path
    label_map: Path | None = None
    object_masks: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return _stem(self.image)


def _stem(path: Path) -> str:
    """A file's name without its image suffix; a folder (a DICOM series) keeps its whole name."""
    from medviewer.io.images import file_suffix

    if path.is_dir():
        return path.name
    suffix = file_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _image_files(folder: Path, with_folders: bool = False) -> list[Path]:
    """Image files in ``folder``; with ``with_folders`` also its sub-folders (each one DICOM series)."""
    from medviewer.io.images import is_image_file

    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and is_image_file(p)) or (with_folders and p.is_dir()))
    )


def find_cases(images_folder: Path, labels_folder: Path) -> tuple[list[Case], list[Path]]:
    """Pair images with ground truth by name (see the module docstring); returns (cases, unpaired)."""
    truths = _image_files(labels_folder)
    by_stem: dict[str, Path] = {}
    for path in truths:
        by_stem.setdefault(_stem(path), path)
    cases, unpaired = [], []
    for image in _image_files(images_folder, with_folders=True):
        stem = _stem(image)
        if stem in by_stem:
            cases.append(Case(image, label_map=by_stem[stem]))
            continue
        objects = [p for p in truths if _stem(p).startswith(stem + "_")]
        if objects:
            cases.append(Case(image, object_masks=objects))
        else:
            unpaired.append(image)
    return cases, unpaired


def _dataset_folders(args) -> tuple[Path, Path] | None:
    """(images, labels) folders in folder mode, or None for a single image."""
    from medviewer.io.errors import MedViewerIOError

    image = Path(args.image)
    if args.ground_truth is None:
        if not image.is_dir() or not (image / "images").is_dir():
            raise MedViewerIOError(
                "give GROUND_TRUTH, or a folder holding images/ and labels/ (or masks/)", image
            )
        for name in LABEL_FOLDERS:
            if (image / name).is_dir():
                return image / "images", image / name
        raise MedViewerIOError("the folder has images/ but neither labels/ nor masks/", image)
    truth = Path(args.ground_truth)
    if truth.is_dir():
        if not image.is_dir():
            raise MedViewerIOError("GROUND_TRUTH is a folder, so IMAGE must be a folder of images too", image)
        return image, truth
    return None


def _parse_labels(text: str | None) -> list[int] | None:
    from medviewer.io.errors import MedViewerIOError

    if not text:
        return None
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        labels = []
    if not labels or any(not 1 <= v <= 65535 for v in labels):
        raise MedViewerIOError(f"--labels {text!r} needs comma-separated label values 1..65535")
    return sorted(set(labels))


def _settings(args):
    from medviewer.ai.evaluation import EvaluationSettings
    from medviewer.io.errors import MedViewerIOError

    window = None
    if args.window:
        values, _ = _numbers(args.window, 2, "--window (LOW,HIGH)")
        if values[1] <= values[0]:
            raise MedViewerIOError(f"--window {args.window!r}: HIGH must be above LOW")
        window = (values[0], values[1])
    slices: str | tuple[int, ...] = args.slices
    if slices not in ("all", "largest"):
        try:
            slices = tuple(int(v) for v in args.slices.split(",") if v.strip())
        except ValueError:
            slices = ()
        if not slices:
            raise MedViewerIOError(f"--slices {args.slices!r}: use all, largest or comma-separated slice indices")
    if args.clicks < 1:
        raise MedViewerIOError(f"--clicks must be at least 1, got {args.clicks}")
    if not args.tolerance_mm >= 0:
        raise MedViewerIOError(f"--tolerance-mm must be >= 0, got {args.tolerance_mm}")
    return EvaluationSettings(
        prompt=args.prompt,
        rounds=args.clicks,
        tolerance_mm=args.tolerance_mm,
        axis=AXES[args.axis],
        slices=slices,
        window=window,
    )



def _objects_of(case: Case, volume, wanted: list[int] | None, control) -> list[tuple[int, str, np.ndarray]]:
    """(label, name, bool mask) for every object of a case; bad ground truth names its file."""
    from medviewer.io.errors import MedViewerIOError
    from medviewer.io.loader import load_labels

    if case.label_map is not None:
        array = load_labels(case.label_map, volume, control).array
        present = [int(v) for v in np.unique(array) if v != 0]
        if not present:
            raise MedViewerIOError("the ground truth holds no labels (all zero)", case.label_map)
        if wanted:
            missing = [v for v in wanted if v not in present]
            if missing:
                raise MedViewerIOError(
                    f"label {', '.join(map(str, missing))} is not in the ground truth "
                    f"(labels present: {', '.join(map(str, present))})",
                    case.label_map,
                )
            present = wanted
        return [(v, f"label {v}", array == v) for v in present]
    objects = []
    for path in case.object_masks:
        mask = load_labels(path, volume, control).array > 0
        if not mask.any():
            raise MedViewerIOError("the mask is empty", path)
        objects.append((1, _stem(path)[len(case.name) + 1 :], mask))
    return objects


def _print_object(result) -> None:
    slices = f", {len(result.slices)} slice{'s' if len(result.slices) != 1 else ''}" if result.slices else ""
    print(f"  {result.name} ({result.protocol}{slices})")
    print(f"    {'click':>5}  {'prompt':14} {'Dice':>7} {'NSD':>7} {'slice Dice':>10} {'slice NSD':>9} {'s/call':>7}")
    for r in result.rounds:
        slice_dice = f"{r.slice_dice:.4f}" if r.slice_dice is not None else "-"
        slice_nsd = f"{r.slice_nsd:.4f}" if r.slice_nsd is not None else "-"
        per_call = f"{r.seconds_per_call:.3f}" if r.seconds_per_call is not None else "-"
        print(
            f"    {r.round:>5}  {r.prompt:14} {r.dice:7.4f} {r.nsd:7.4f} {slice_dice:>10} {slice_nsd:>9} {per_call:>7}"
        )


def _print_summary(rows: list[tuple[str, object]], means: list[dict]) -> None:
    width = max([len("case / object")] + [len(f"{c} / {o.name}") for c, o in rows])
    print(f"\n{'case / object':{width}}  {'Dice':>7} {'NSD':>7}  (after the last click)")
    for case_name, result in rows:
        print(f"{case_name + ' / ' + result.name:{width}}  {result.final.dice:7.4f} {result.final.nsd:7.4f}")
    print(f"\nmean over {len(rows)} object{'s' if len(rows) != 1 else ''}:")
    print(f"  {'click':>5} {'Dice':>7} {'NSD':>7} {'s/call':>7}")
    for m in means:
        per_call = f"{m['seconds_per_call']:.3f}" if m["seconds_per_call"] is not None else "-"
        print(f"  {m['round']:>5} {m['dice']:7.4f} {m['nsd']:7.4f} {per_call:>7}")


def run_evaluate(args) -> int:
    """The ``evaluate`` sub-command (errors propagate to ``medviewer.cli.main``)."""
    import time

    from medviewer import __version__
    from medviewer.ai.engine import Engine
    from medviewer.ai.evaluation import Evaluator, mean_by_round
    from medviewer.ai.registry import ModelRegistry
    from medviewer.io.errors import MedViewerIOError
    from medviewer.io.loader import load_volume
    from medviewer.io.safety import check_output, write_text_atomic
    from medviewer.jobs import JobControl

    settings = _settings(args)
    wanted = _parse_labels(args.labels)
    folders = _dataset_folders(args)
    if folders is None:
        for path in (Path(args.image), Path(args.ground_truth)):
            if not path.exists():
                raise MedViewerIOError("no such file or folder", path)
        cases, unpaired = [Case(Path(args.image), label_map=Path(args.ground_truth))], []
    else:
        cases, unpaired = find_cases(*folders)
        if not cases:
            raise MedViewerIOError(
                f"no image in {folders[0]} has ground truth in {folders[1]} (same name, or <name>_<object>)",
                folders[1],
            )
    output = check_output(args.output, overwrite=args.force) if args.output else None
    for image in unpaired:
        print(f"warning: {image.name}: no ground truth found, skipped", file=sys.stderr)

    registry = ModelRegistry()
    entry, _ = checked_model(registry, args.model, args.checkpoint)
    control = JobControl(_progress_printer(args.verbose))
    engine = Engine(registry, device=args.device)
    rows: list[tuple[str, object]] = []
    report_cases = []
    started = time.perf_counter()
    model_loaded = False
    try:
        evaluator = Evaluator(engine, args.model, settings)  # refuses unsuitable prompts before loading
        if not args.json:
            rounds = f"{settings.rounds} click{'s' if settings.rounds != 1 else ''}"
            print(
                f"{entry.info.name} ({args.model}), prompt {settings.prompt}, {rounds}, "
                f"NSD tolerance {settings.tolerance_mm:g} mm, {len(cases)} case{'s' if len(cases) != 1 else ''}"
            )
        for case in cases:
            volume = load_volume(case.image, args.series if folders is None else None, control)
            objects = _objects_of(case, volume, wanted, control)
            if not model_loaded:  # after the first case's checks, so bad input fails fast
                engine.load_model(args.model, args.checkpoint).get()
                model_loaded = True
            if not args.json:
                print(f"\n{case.image.name}")
            results = []
            for label, name, mask in objects:
                try:
                    result = evaluator.evaluate(volume, mask, label, name, control)
                except ValueError as exc:
                    raise MedViewerIOError(str(exc), case.label_map or case.image) from None
                results.append(result)
                rows.append((case.name, result))
                if not args.json:
                    _print_object(result)
            report_cases.append(
                {
                    "image": str(case.image),
                    "ground_truth": [str(p) for p in ([case.label_map] if case.label_map else case.object_masks)],
                    "objects": [r.as_dict() for r in results],
                }
            )
            engine.forget_volume(volume)
        device = getattr(engine.loaded_model(args.model), "device", None) or engine.device
    finally:
        engine.shutdown()
    means = mean_by_round([r for _, r in rows])
    report = {
        "tool": f"medviewer {__version__} evaluate",
        "model": {"id": args.model, "name": entry.info.name, "checkpoint": args.checkpoint},
        "device": device,
        "settings": {
            "prompt": settings.prompt,
            "clicks": settings.rounds,
            "tolerance_mm": settings.tolerance_mm,
            "axis": args.axis,
            "slices": settings.slices if isinstance(settings.slices, str) else list(settings.slices),
            "window": list(settings.window) if settings.window else None,
        },
        "cases": report_cases,
        "skipped": [str(p) for p in unpaired],
        "mean": means,
        "seconds": round(time.perf_counter() - started, 3),
    }
    text = json.dumps(report, indent=2) + "\n"
    if output is not None:
        write_text_atomic(output, text)
    if args.json:
        sys.stdout.write(text)
    else:
        _print_summary(rows, means)
        if output is not None:
            print(f"\nwrote {output}")
    return EXIT_OK


def add_parser(sub) -> None:
    """Register ``evaluate`` on the main parser's sub-commands."""
    from medviewer.ai.evaluation import PROMPT_MODES

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model against ground truth with a simulated user (Dice, NSD per click)",
        description="Simulate a user prompting --model on IMAGE and score each click against GROUND_TRUTH "
        "(a label map on IMAGE's grid): first the ground truth's bounding box (box, box3d) or a click at "
        "the object's centre (points, points3d), then clicks at the centre of the largest error. 2D models "
        "run slice by slice on volumes (--slices). A folder with images/ and labels/ (or masks/), or two "
        "folders, evaluates every pair with matching names (or <name>_<object> binary masks) and prints means; "
        "a sub-folder of images/ is one DICOM series named after the folder.",
    )
    evaluate.add_argument("image", help="image file or DICOM folder; or a dataset folder with images/ and labels/")
    evaluate.add_argument("ground_truth", nargs="?", help="label map on IMAGE's grid, or a folder of them")
    evaluate.add_argument("--model", required=True, help="model id (see: medviewer models)")
    evaluate.add_argument("--checkpoint", help="checkpoint file (required for models whose weights you choose)")
    evaluate.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="AI device (default auto)")
    evaluate.add_argument(
        "--prompt", default="box", choices=PROMPT_MODES,
        help="first prompt: 2D box or click per slice (3D for 3D-only models), or a 3D box / 3D clicks (default box)",
    )
    evaluate.add_argument(
        "--clicks", type=int, default=1, metavar="N",
        help="interaction rounds per object, the first prompt included (default 1)",
    )
    evaluate.add_argument("--labels", metavar="1,2,...", help="labels to evaluate (default: every label present)")
    evaluate.add_argument("--tolerance-mm", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    evaluate.add_argument("--axis", default="axial", choices=tuple(AXES), help="slicing axis for 2D models")
    evaluate.add_argument(
        "--slices", default="all", metavar="all|largest|K,...",
        help="2D models on volumes: every slice with the label (default), the one where it is largest, or indices",
    )
    evaluate.add_argument(
        "--window", metavar="LOW,HIGH",
        help="intensity window given to the model (default: its own rule); write --window=-160,240 for a negative LOW",
    )
    evaluate.add_argument("--series", help="series key or UID when the DICOM folder holds several")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")
    evaluate.add_argument("--output", metavar="REPORT.json", help="also write the JSON report to this file")
    evaluate.add_argument("--force", action="store_true", help="replace --output if it exists")
    evaluate.add_argument("-v", "--verbose", action="store_true", help="show progress")
    evaluate.set_defaults(func=run_evaluate)
