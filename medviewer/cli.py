"""Command line: ``medviewer [PATH]`` opens the app; sub-commands script it headlessly.

Sub-commands never import Qt (and VTK only to write STL/OBJ meshes), so ``info``,
``convert``, ``export``, ``models`` and ``segment`` run on servers without a display. Every failure is printed as
one human-readable line with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medviewer import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

#: Mirrors medviewer.render.layout.LAYOUT_NAMES (kept here so parsing imports no GUI code).
GUI_LAYOUTS = ("2x2", "1x3", "axial", "coronal", "sagittal", "3d")


def _progress_printer(enabled: bool):
    if not enabled:
        return None

    def report(done: int, total: int, message: str) -> None:
        if total and (done == total or done % max(1, total // 10) == 0):
            print(f"  {message} ({done}/{total})", file=sys.stderr)

    return report


def _info(args) -> int:
    from medviewer.io.loader import describe_path
    from medviewer.jobs import JobControl

    description = describe_path(args.path, JobControl(_progress_printer(args.verbose)))
    if args.json:
        print(json.dumps(description, indent=2))
        return EXIT_OK
    print(f"{description['path']}")
    if description["kind"] == "dicom":
        print(f"  {len(description['series'])} DICOM series")
        for series in description["series"]:
            size = "x".join(str(v) for v in series["dimensions"])
            spacing = series["spacing"]
            spacing_text = "x".join(f"{v:.4g}" if v is not None else "?" for v in spacing) if spacing else "?"
            print(
                f"  - {series['modality'] or '?':3} {series['description'] or '(no description)'!r}"
                f"  {size}  {spacing_text} mm  {series['slices']} slices"
                f"{'  (multi-frame)' if series['multiframe'] else ''}"
            )
            print(f"      key={series['key']}")
            for warning in series["warnings"]:
                print(f"      warning: {warning}")
        return EXIT_OK
    fmt = lambda values: "(" + ", ".join(f"{v:.6g}" for v in values) + ")"  # noqa: E731
    print(f"  size      {tuple(description['size'])}")
    print(f"  spacing   {fmt(description['spacing'])} mm")
    print(f"  origin    {fmt(description['origin'])} mm (LPS)")
    print(f"  direction {fmt(description['direction'])}  [{description['orientation']}]")
    print(f"  dtype     {description['dtype']}")
    if description["modality"]:
        print(f"  modality  {description['modality']}")
    for warning in description["warnings"]:
        print(f"  warning: {warning}")
    return EXIT_OK


def _convert(args) -> int:
    from medviewer.io.errors import WriteError
    from medviewer.io.images import write_volume
    from medviewer.io.loader import load_volume
    from medviewer.jobs import JobControl

    source, target = Path(args.input).resolve(), Path(args.output).resolve()
    if source == target:
        raise WriteError("refusing to overwrite the input file", target)
    volume = load_volume(source, args.series, JobControl(_progress_printer(args.verbose)))
    write_volume(target, volume)
    for warning in volume.info.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    g = volume.geometry
    print(f"wrote {target} ({'x'.join(map(str, g.size_xyz))}, {volume.dtype}, spacing {g.spacing})")
    return EXIT_OK


def _parse_items(text: str | None) -> list[tuple[int | None, str]]:
    """'a,b' or '1=a,3=b' -> [(None, 'a'), ...] / [(1, 'a'), (3, 'b')]."""
    items: list[tuple[int | None, str]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep and key.strip().isdigit():
            items.append((int(key), value.strip()))
        else:
            items.append((None, part))
    return items


def _parse_color(text: str) -> tuple[int, int, int]:
    from medviewer.io.errors import MedViewerIOError

    value = text.strip().lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise MedViewerIOError(f"colour {text!r} is not #RRGGBB")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def _assign(items, labels: list[int], what: str) -> dict[int, str]:
    """Map positional items to labels in ascending order, explicit 'N=' items to N."""
    from medviewer.io.errors import MedViewerIOError

    out: dict[int, str] = {}
    positional = [v for k, v in items if k is None]
    if len(positional) > len(labels):
        raise MedViewerIOError(f"{len(positional)} {what} given but the label map holds {len(labels)} labels {labels}")
    out.update(zip(labels, positional))
    out.update({k: v for k, v in items if k is not None})
    return out


def _export(args) -> int:
    import numpy as np

    from medviewer.export.formats import export_segmentation, format_for
    from medviewer.io.errors import WriteError
    from medviewer.io.loader import load_volume
    from medviewer.io.segmentation_files import load_segmentation
    from medviewer.jobs import JobControl
    from medviewer.model.anatomy import anatomy_color
    from medviewer.model.segments import DEFAULT_COLORS, Segment

    target = Path(args.output)
    fmt = format_for(target, args.format)
    for source in (args.labels, args.reference):
        if source and Path(source).resolve() == target.resolve():
            raise WriteError("refusing to overwrite an input", target)
    control = JobControl(_progress_printer(args.verbose))
    volume = load_volume(args.reference, args.series, control) if args.reference else None
    loaded = load_segmentation(args.labels, volume, args.label_file, control)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    array, geometry = loaded.array, loaded.geometry
    table = {s.label: s for s in loaded.segments}
    present = sorted(int(v) for v in np.unique(array) if v != 0)
    labels_known = sorted(set(present) | set(table))
    names = _assign(_parse_items(args.names), labels_known, "names")
    colors = {k: _parse_color(v) for k, v in _assign(_parse_items(args.colors), labels_known, "colours").items()}
    for label in labels_known:
        segment = table.get(label)
        name = names.get(label, segment.name if segment else f"Segment {label}")
        color = colors.get(label) or (segment.color if segment and label not in names else None)
        color = color or anatomy_color(name) or DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]
        if segment is None:
            table[label] = Segment(label, name, color)
        else:
            segment.name, segment.color = name, tuple(color)
    ordered = [table[k] for k in labels_known]
    protected = [p for p in (args.labels, args.reference) if p]
    result = export_segmentation(
        target, array, geometry, ordered, volume, fmt, overwrite=args.force, protected=protected,
        coordinates=args.coordinates, smoothing=not args.no_smoothing, control=control, deidentify=args.deidentify,
    )
    if args.provenance:
        from medviewer.io.provenance_json import write_provenance_json

        sidecar = target.with_name(target.name + ".provenance.json")
        result.paths.append(
            write_provenance_json(sidecar, ordered, volume, target.name, args.force, protected, args.deidentify)
        )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for written in result.paths:
        print(f"wrote {written}")
    for note in result.notes:
        print(note)
    return EXIT_OK


# -- AI: `models` and `segment` (the same registry, engine and plugins as the GUI) ---------------------

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
#: For each slicing axis: which of (i, j, k) are the view's X and Y, and which is the slice index.
#: Matches medviewer.ai.engine.take_slice: axis 0 -> array[k] (x=i, y=j); axis 1 -> array[:, j] (x=i, y=k);
#: axis 2 -> array[:, :, i] (x=j, y=k).
IN_PLANE = {0: (0, 1, 2), 1: (0, 2, 1), 2: (1, 2, 0)}


def _model_card(entry) -> dict:
    info = entry.info
    card = {"id": entry.id, "name": entry.name, "status": entry.status, "source": entry.source}
    if info is not None:
        card.update(
            version=info.version,
            license=info.license,
            prompts=sorted(k.value for k in info.prompts),
            dims=sorted(d.value for d in info.dims),
            input_size=list(info.input_size) if info.input_size else None,
            checkpoint={"kind": info.checkpoint.kind, "rule": info.checkpoint.describe()},
        )
    return card


def _models(args) -> int:
    from medviewer.ai.registry import ModelRegistry

    cards = [_model_card(entry) for entry in ModelRegistry().entries()]
    if args.json:
        print(json.dumps(cards, indent=2))
        return EXIT_OK
    for card in cards:
        print(f"{card['id']}  [{card['status']}]")
        if "version" not in card:
            continue
        print(f"  {card['name']} {card['version']}  license: {card['license'] or '?'}")
        size = "x".join(map(str, card["input_size"])) if card["input_size"] else "any"
        print(f"  prompts: {', '.join(card['prompts']) or 'none'}  dims: {', '.join(card['dims'])}  input: {size}")
        print(f"  checkpoint: {card['checkpoint']['rule']}")
    return EXIT_OK


def _numbers(text: str, count: int, what: str, allow_sign: bool = False) -> tuple[list[float], int]:
    """'1,2,3[,+|-]' -> ([1.0, 2.0, 3.0], 1|0)."""
    import math

    from medviewer.io.errors import MedViewerIOError

    parts = [p.strip() for p in text.split(",")]
    label = 1
    if allow_sign and len(parts) == count + 1:
        sign = parts.pop()
        if sign not in ("+", "-", "1", "0"):
            raise MedViewerIOError(f"{what} {text!r}: the last item must be + or -")
        label = 1 if sign in ("+", "1") else 0
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise MedViewerIOError(f"{what} {text!r} needs {count} comma-separated numbers")
    return values, label


def _to_index(volume, point: list[float], mm: bool) -> list[float]:
    if not mm:
        return [float(v) for v in point]
    import numpy as np

    return [float(v) for v in np.rint(volume.geometry.physical_to_index(point))]


def _check_inside(volume, ijk, what: str) -> None:
    from medviewer.io.errors import MedViewerIOError

    size = volume.geometry.size_xyz
    for value, n, name in zip(ijk, size, "ijk", strict=True):
        if not 0 <= round(value) <= n - 1:
            raise MedViewerIOError(
                f"{what} is outside the volume: {name}={value:g} not in 0..{n - 1} (size {'x'.join(map(str, size))})"
            )


def _prompt_record(volume, kind: str, ijk_list, labels=None) -> dict:
    physical = [[round(float(v), 4) for v in volume.geometry.index_to_physical(p)] for p in ijk_list]
    record = {"kind": kind, "voxel_ijk": [[float(v) for v in p] for p in ijk_list], "physical_lps_mm": physical}
    if labels is not None:
        record["labels"] = list(labels)
    return record


def checked_model(registry, model_id: str, checkpoint: str | None):
    """(registry entry, checkpoint path): unavailable models and missing checkpoints refused early.

    Shared by ``segment`` and ``evaluate`` so both fail the same way before any work starts.
    """
    from medviewer.ai.errors import CheckpointError, ModelError

    entry = registry.get(model_id)  # PluginError naming the known models
    if not entry.available:
        raise ModelError(f"model {model_id!r}: {entry.status}")
    try:
        path = registry.resolve_checkpoint(model_id, checkpoint)
    except CheckpointError as exc:
        hint = " (pass --checkpoint PATH)" if entry.info.checkpoint.kind == "user_file" and not checkpoint else ""
        raise CheckpointError(f"{entry.info.name}: {exc}{hint}") from None
    return entry, path


def _segment(args) -> int:
    import datetime
    import os
    import time

    import numpy as np

    from medviewer.ai.api import Prompt2D, Prompt3D
    from medviewer.ai.engine import Engine
    from medviewer.ai.errors import ModelError, UnsupportedPromptError
    from medviewer.ai.registry import ModelRegistry
    from medviewer.io.errors import MedViewerIOError, WriteError
    from medviewer.io.images import WRITE_SUFFIXES, file_suffix, write_array
    from medviewer.io.loader import load_volume
    from medviewer.jobs import JobControl

    source, target = Path(args.input).resolve(), Path(args.output).resolve()
    sidecar = target.with_name(target.name + ".provenance.json")
    if target == source or sidecar == source:
        raise WriteError("refusing to overwrite the input", target)
    if file_suffix(target) not in WRITE_SUFFIXES:
        suffix = file_suffix(target) or target.name
        raise WriteError(f"cannot write '{suffix}' files; use one of {', '.join(WRITE_SUFFIXES)}", target)
    if not target.parent.is_dir():
        raise WriteError("the folder does not exist", target.parent)
    if target.exists() and not args.force:
        raise WriteError("already exists; use --force to replace it", target)
    if not 1 <= args.label <= 65535:
        raise MedViewerIOError(f"--label must be 1..65535, got {args.label}")

    registry = ModelRegistry()
    entry, checkpoint_path = checked_model(registry, args.model, args.checkpoint)
    info = entry.info

    volume = load_volume(source, args.series, JobControl(_progress_printer(args.verbose)))
    for warning in volume.info.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    shape = volume.array.shape
    if len(shape) != 3:
        raise MedViewerIOError(f"expected a 3D volume, got array shape {shape}", source)
    axis = AXES[args.axis]
    x_of, y_of, n_of = IN_PLANE[axis]

    # -- prompts: everything in voxel indices (i, j, k) from here on ---------------------------------
    mode: str
    prompts: list[dict] = []
    slice_index: int | None = None
    prompt2d = prompt3d = None
    if args.box is not None:
        if args.mm:
            corners, _ = _numbers(args.box, 6, "--box (with --mm: x0,y0,z0,x1,y1,z1 in LPS mm)")
            a = _to_index(volume, corners[:3], True)
            b = _to_index(volume, corners[3:], True)
            if a[n_of] != b[n_of]:
                raise MedViewerIOError(
                    f"the --box corners lie on different {args.axis} slices ({a[n_of]:g}, {b[n_of]:g})"
                )
            if args.slice is not None and args.slice != int(a[n_of]):
                raise MedViewerIOError(f"--slice {args.slice} does not match the box's slice {int(a[n_of])}")
            slice_index = int(a[n_of])
            xy = [a[x_of], a[y_of], b[x_of], b[y_of]]
        else:
            if args.slice is None:
                raise MedViewerIOError("--box needs --slice K (the slice index along --axis)")
            xy, _ = _numbers(args.box, 4, "--box")
            slice_index = args.slice
        corners_ijk = []
        for x, y in ((xy[0], xy[1]), (xy[2], xy[3])):
            ijk = [0.0, 0.0, 0.0]
            ijk[x_of], ijk[y_of], ijk[n_of] = x, y, float(slice_index)
            _check_inside(volume, ijk, "--box")
            corners_ijk.append(ijk)
        prompt2d = Prompt2D(box=tuple(xy))
        prompts.append(_prompt_record(volume, "box", corners_ijk))
        mode = "2d"
    elif args.point:
        points, labels = [], []
        for text in args.point:
            values, label = _numbers(text, 3, "--point", allow_sign=True)
            ijk = _to_index(volume, values, args.mm)
            _check_inside(volume, ijk, f"--point {text}")
            points.append(ijk)
            labels.append(label)
        prompts.append(_prompt_record(volume, "points", points, labels))
        if info.is_3d:
            prompt3d = Prompt3D(points=tuple(tuple(p) for p in points), labels=tuple(labels))
            mode = "3d"
        else:
            slices = sorted({int(p[n_of]) for p in points})
            if len(slices) != 1 or (args.slice is not None and slices != [args.slice]):
                raise MedViewerIOError(
                    f"{info.name} segments one {args.axis} slice at a time: all --point must share the slice index"
                    f" along that axis (got {slices})"
                )
            slice_index = slices[0]
            prompt2d = Prompt2D(points=tuple((p[x_of], p[y_of]) for p in points), labels=tuple(labels))
            mode = "2d"
    else:
        label_text = "--box3d (with --mm: x0,y0,z0,x1,y1,z1 in LPS mm)" if args.mm else "--box3d"
        values, _ = _numbers(args.box3d, 6, label_text)
        a, b = _to_index(volume, values[:3], args.mm), _to_index(volume, values[3:], args.mm)
        _check_inside(volume, a, "--box3d")
        _check_inside(volume, b, "--box3d")
        if not info.is_3d:
            raise UnsupportedPromptError(f"{info.name} has no 3D mode; use --box with --slice (and --propagate)")
        prompt3d = Prompt3D(box=tuple(a + b))
        prompts.append(_prompt_record(volume, "box_3d", [a, b]))
        mode = "3d"
    if args.propagate and mode != "2d":
        raise UnsupportedPromptError("--propagate works with 2D models (a --box or --point on one slice)")
    if mode == "2d" and not info.is_2d:
        raise UnsupportedPromptError(f"{info.name} does not segment single slices; use --box3d or --point")

    # -- run through the engine ------------------------------------------------------------------------
    started = time.time()
    engine = Engine(registry, device=args.device)
    scores: dict[int, float | None] = {}
    score: float | None = None
    try:
        engine.load_model(args.model, args.checkpoint).get()
        sha = engine.checkpoint_sha(args.model) or info.checkpoint.sha256  # as the GUI's model card
        mask = np.zeros(shape, dtype=bool)
        if mode == "3d":
            prediction3d = engine.predict_3d(args.model, volume, prompt3d).get()
            mask = np.asarray(prediction3d.mask, dtype=bool)
            score = prediction3d.score
        else:
            prediction = engine.segment(args.model, volume, axis, slice_index, prompt2d).get()
            score = prediction.score
            key: list = [slice(None)] * 3
            key[axis] = slice_index
            mask[tuple(key)] = prediction.mask
            if args.propagate:
                from medviewer.ai.propagation import start_propagation

                result = start_propagation(engine, args.model, volume, axis, slice_index, prediction.mask).get()
                mask |= np.asarray(result.mask, dtype=bool)
                scores = {int(k): (None if v is None else float(v)) for k, v in sorted(result.scores.items())}
        loaded = engine.loaded_model(args.model)
        device = getattr(loaded, "device", None) or engine.device
    finally:
        engine.shutdown()
    if mask.shape != shape:
        raise ModelError(f"{info.name} returned a mask of shape {mask.shape}, expected {shape}")

    voxels = int(mask.sum())
    millilitres = voxels * volume.geometry.voxel_volume_mm3 / 1000.0
    dtype = np.uint8 if args.label <= 255 else np.uint16
    labels_array = np.where(mask, args.label, 0).astype(dtype)
    provenance = {
        "tool": f"medviewer {__version__} segment",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": str(source),
        "series": args.series,
        "output": str(target),
        "label": args.label,
        "model": {
            "id": info.id,
            "name": info.name,
            "version": info.version,
            "license": info.license,
            "checkpoint": str(checkpoint_path) if checkpoint_path else None,
            "checkpoint_sha256": sha or None,
        },
        "device": device,
        "axis": args.axis if mode == "2d" else None,
        "slice": slice_index,
        "coordinates_given_in": "LPS mm" if args.mm else "voxel ijk",
        "prompts": prompts,
        "propagate": bool(args.propagate),
        "voxels": voxels,
        "volume_ml": round(millilitres, 4),
        "score": score,
        "slice_scores": {str(k): v for k, v in scores.items()} if args.propagate else None,
        "seconds": round(time.time() - started, 3),
    }
    # Write the sidecar to a temporary name first, so a failure leaves neither file behind.
    temp_sidecar = sidecar.with_name(f".{sidecar.name}.partial")
    existed = target.exists()
    written = False
    try:
        temp_sidecar.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        write_array(target, labels_array, volume.geometry)
        written = True
        os.replace(temp_sidecar, sidecar)
    except OSError as exc:
        if written and not existed:
            target.unlink(missing_ok=True)
        raise WriteError(f"writing failed ({exc})", target) from None
    finally:
        temp_sidecar.unlink(missing_ok=True)
    if voxels == 0:
        print("warning: the model segmented nothing (an empty label map was written)", file=sys.stderr)
    score_text = f", score {score:.3f}" if score is not None else ""
    slices_text = f", {sum(1 for k in range(shape[axis]) if mask.take(k, axis).any())} slices" if args.propagate else ""
    print(f"wrote {target}: {voxels} voxels, {millilitres:.3f} mL{slices_text}{score_text} ({info.id} on {device})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medviewer",
        description="View medical scans, segment them with AI models, correct and export masks.",
    )
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="describe a file or every DICOM series in a folder")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.add_argument("-v", "--verbose", action="store_true", help="show progress")
    info.set_defaults(func=_info)

    convert = sub.add_parser("convert", help="load anything supported and write NIfTI / NRRD / MHA")
    convert.add_argument("input")
    convert.add_argument("output", help="target file; the format follows the extension (.nii.gz, .nrrd, .mha)")
    convert.add_argument("--series", help="series key or Series Instance UID when the folder holds several")
    convert.add_argument("-v", "--verbose", action="store_true", help="show progress")
    convert.set_defaults(func=_convert)

    export = sub.add_parser(
        "export",
        help="export a label map: NIfTI/NRRD/MHA, Slicer .seg.nrrd, DICOM SEG, STL/OBJ, statistics CSV",
        description="Export LABELS (a label map, .seg.nrrd, DICOM SEG or .mvsession) on the grid of "
        "--reference to OUTPUT; the format follows OUTPUT's extension: "
        ".nii.gz .nii .nrrd .mha .seg.nrrd .dcm .stl .obj .csv .json (provenance) .txt (ITK-SNAP labels).",
    )
    export.add_argument("labels", help="label map file, .seg.nrrd, DICOM SEG (.dcm) or .mvsession")
    export.add_argument("output", help="file to write; an existing file is replaced only with --force")
    export.add_argument("--reference", help="the scan (image file or DICOM folder) the labels were drawn on")
    export.add_argument("--series", help="series key or UID when the reference folder holds several")
    export.add_argument("--format", help="override the format chosen from OUTPUT's extension")
    export.add_argument("--names", help="segment names: 'liver,spleen' (labels in ascending order) or '1=liver,3=spleen'")
    export.add_argument("--colors", help="segment colours as #RRGGBB: '#dd8265,#9d6ca2' or '1=#dd8265'")
    export.add_argument("--label-file", help="ITK-SNAP label description file with names and colours")
    export.add_argument("--coordinates", default="LPS", choices=("LPS", "RAS"), help="mesh coordinates (default LPS)")
    export.add_argument("--no-smoothing", action="store_true", help="write blocky voxel surfaces (meshes)")
    export.add_argument("--provenance", action="store_true", help="also write OUTPUT.provenance.json")
    export.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    export.add_argument("--deidentify", action="store_true",
                        help="strip patient identifiers and file paths (DICOM SEG, provenance JSON; docs/privacy.md)")
    export.add_argument("-v", "--verbose", action="store_true", help="show progress")
    export.set_defaults(func=_export)

    models = sub.add_parser("models", help="list the AI model plugins, their status and model cards")
    models.add_argument("--json", action="store_true", help="print machine-readable JSON")
    models.set_defaults(func=_models)

    segment = sub.add_parser(
        "segment",
        help="segment a scan with an AI model plugin and write a label map plus provenance JSON",
        description="Segment INPUT with model --model and write a label map on INPUT's grid to OUTPUT "
        "(.nii.gz .nii .nrrd .mha) and OUTPUT.provenance.json. Coordinates are voxel indices in "
        "SimpleITK order (i = column, j = row, k = slice); with --mm they are LPS millimetres.",
    )
    segment.add_argument("input", help="image file, DICOM file or DICOM folder")
    segment.add_argument("output", help="label map to write; an existing file is replaced only with --force")
    segment.add_argument("--model", required=True, help="model id (see: medviewer models)")
    segment.add_argument("--checkpoint", help="checkpoint file (required for models whose weights you choose)")
    segment.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="AI device (default auto)")
    prompt = segment.add_mutually_exclusive_group(required=True)
    prompt.add_argument(
        "--box", metavar="X0,Y0,X1,Y1",
        help="2D box on slice --slice: axial X=i,Y=j; coronal X=i,Y=k; sagittal X=j,Y=k "
        "(with --mm: two LPS corners x0,y0,z0,x1,y1,z1 on one slice)",
    )
    prompt.add_argument(
        "--point", metavar="I,J,K[,+/-]", action="append",
        help="a positive (+, default) or negative (-) click; repeat for several",
    )
    prompt.add_argument("--box3d", metavar="I0,J0,K0,I1,J1,K1", help="3D box, inclusive corners (3D models)")
    segment.add_argument("--slice", type=int, help="slice index along --axis (k axial, j coronal, i sagittal)")
    segment.add_argument("--axis", default="axial", choices=tuple(AXES), help="slicing axis for 2D models")
    segment.add_argument(
        "--propagate", action="store_true", help="2D models: carry the mask through the neighbouring slices"
    )
    segment.add_argument("--mm", action="store_true", help="coordinates are physical LPS millimetres")
    segment.add_argument("--series", help="series key or UID when the folder holds several")
    segment.add_argument("--label", type=int, default=1, help="label value to write (default 1)")
    segment.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    segment.add_argument("-v", "--verbose", action="store_true", help="show progress")
    segment.set_defaults(func=_segment)

    from medviewer.cli_evaluate import add_parser as add_evaluate_parser

    add_evaluate_parser(sub)
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medviewer", description="Open the medviewer window.")
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    parser.add_argument("path", nargs="?", help="image file, DICOM file or DICOM folder to open")
    parser.add_argument("--series", help="series key or UID when the folder holds several")
    parser.add_argument("--labels", help="label map to show over the image (must share its grid)")
    parser.add_argument("--demo", action="store_true", help="open the built-in synthetic CT phantom")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render, save a screenshot and exit")
    parser.add_argument(
        "--layout",
        choices=GUI_LAYOUTS,
        help="view layout for this run: 2x2 (default), 1x3, or one view maximised",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="window/level preset, e.g. 'soft tissue', lung, bone, brain, liver, auto, or a DICOM window name",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation headlessly (demo case -> LiteMedSAM -> export -> read back) and exit",
    )
    parser.add_argument(
        "--gui", action="store_true", help="with --self-test: also open the window with the demo and grab a screenshot"
    )
    return parser


SUBCOMMANDS = ("info", "convert", "export", "models", "segment", "evaluate")


def _join_negative_values(argv: list[str]) -> list[str]:
    """'--box -131.6,...' -> '--box=-131.6,...': argparse would take a leading '-' for an option."""
    out: list[str] = []
    items = iter(argv)
    for item in items:
        if item in ("--box", "--point", "--box3d"):
            value = next(items, None)
            if value is not None and len(value) > 1 and value[0] == "-" and (value[1].isdigit() or value[1] == "."):
                out.append(f"{item}={value}")
                continue
            out.append(item)
            if value is not None:
                out.append(value)
            continue
        out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from medviewer.ai.errors import ModelError
    from medviewer.io.errors import MedViewerIOError
    from medviewer.jobs import JobCancelled

    if argv and argv[0] in SUBCOMMANDS:
        if argv[0] == "segment":
            argv = _join_negative_values(argv)
        args = build_parser().parse_args(argv)
        try:
            return args.func(args)
        except MedViewerIOError as exc:
            print(f"medviewer {args.command}: error: {exc}", file=sys.stderr)
            if getattr(exc, "series", None) and args.command in ("convert", "export", "segment"):
                print("pick one with --series KEY (keys: medviewer info PATH)", file=sys.stderr)
            return EXIT_ERROR
        except ModelError as exc:  # PluginError, CheckpointError, UnsupportedPromptError, out of memory
            print(f"medviewer {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except JobCancelled:
            print(f"medviewer {args.command}: cancelled", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return 130
    if argv and argv[0] in ("-h", "--help"):
        build_parser().print_help()
        print("\nWithout a command, medviewer opens its window:")
        build_gui_parser().print_usage()
        return EXIT_OK
    args = build_gui_parser().parse_args(argv)
    return main_gui_with(args)


def main_gui_with(args) -> int:
    if getattr(args, "self_test", False):
        from medviewer.selftest import main as self_test_main

        return self_test_main(gui=args.gui)
    from medviewer.ui.app import run_app

    return run_app(
        path=args.path,
        series=args.series,
        demo=args.demo,
        labels=args.labels,
        screenshot=args.screenshot,
        layout=args.layout,
        preset=args.preset,
    )


def main_gui() -> int:
    return main_gui_with(build_gui_parser().parse_args())
