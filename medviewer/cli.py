"""Command line: ``medviewer [PATH]`` opens the app; sub-commands script it headlessly.

Sub-commands never import Qt or VTK, so ``info`` and ``convert`` run on servers without a
display. Every failure is printed as one human-readable line with a non-zero exit code.
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
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medviewer", description="Open the medviewer window.")
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    parser.add_argument("path", nargs="?", help="image file, DICOM file or DICOM folder to open")
    parser.add_argument("--series", help="series key or UID when the folder holds several")
    parser.add_argument("--labels", help="label map to show over the image (must share its grid)")
    parser.add_argument("--demo", action="store_true", help="open the built-in synthetic CT phantom")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render, save a screenshot and exit")
    return parser


SUBCOMMANDS = ("info", "convert")


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
            if getattr(exc, "series", None) and args.command == "convert":
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

    return run_app(path=args.path, series=args.series, demo=args.demo, labels=args.labels, screenshot=args.screenshot)


def main_gui() -> int:
    return main_gui_with(build_gui_parser().parse_args())
