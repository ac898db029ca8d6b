"""Command line: ``medviewer [PATH]`` opens the app; sub-commands script it headlessly.

Sub-commands never import Qt (and VTK only to write STL/OBJ meshes), so ``info``,
``convert`` and ``export`` run on servers without a display. Every failure is printed as
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
        coordinates=args.coordinates, smoothing=not args.no_smoothing, control=control,
    )
    if args.provenance:
        from medviewer.io.provenance_json import write_provenance_json

        sidecar = target.with_name(target.name + ".provenance.json")
        result.paths.append(write_provenance_json(sidecar, ordered, volume, target.name, args.force, protected))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for written in result.paths:
        print(f"wrote {written}")
    for note in result.notes:
        print(note)
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
    export.add_argument("-v", "--verbose", action="store_true", help="show progress")
    export.set_defaults(func=_export)
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
    return parser


SUBCOMMANDS = ("info", "convert", "export")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from medviewer.io.errors import MedViewerIOError
    from medviewer.jobs import JobCancelled

    if argv and argv[0] in SUBCOMMANDS:
        args = build_parser().parse_args(argv)
        try:
            return args.func(args)
        except MedViewerIOError as exc:
            print(f"medviewer {args.command}: error: {exc}", file=sys.stderr)
            if getattr(exc, "series", None) and args.command in ("convert", "export"):
                print("pick one with --series KEY (keys: medviewer info PATH)", file=sys.stderr)
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
