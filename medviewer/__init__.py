"""medviewer: view medical scans, prompt segmentation models, correct and export masks."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _read_version() -> str:
    """pyproject.toml's version, as installed (importlib.metadata) or from the source tree.

    The fallback covers a checkout put on ``sys.path`` without installing it; a frozen
    bundle carries medviewer's dist-info, so it takes the first path.
    """
    try:
        return metadata.version("medviewer")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        with (_SOURCE_ROOT / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "0+unknown"


__version__ = _read_version()


def resource_path(name: str) -> Path:
    """Path of a file shipped in the top-level ``resources/`` folder (icons, notices).

    Looks inside a PyInstaller bundle (``sys._MEIPASS``), then the source tree, then the
    ``medviewer_resources`` folder a wheel install creates. The path may not exist; callers
    fall back to something built in.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen_root) / "resources"] if frozen_root else []
    candidates.append(_SOURCE_ROOT / "resources")
    try:
        import importlib.util

        spec = importlib.util.find_spec("medviewer_resources")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    for folder in candidates:
        if (folder / name).exists():
            return folder / name
    return candidates[0] / name
