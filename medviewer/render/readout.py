"""What the status bar says about the voxel under the mouse (no Qt, no VTK)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume


@dataclass(frozen=True)
class CursorSample:
    """Everything known about one voxel: index, LPS position, intensity and label."""

    ijk: tuple[int, int, int]
    lps_mm: tuple[float, float, float]
    value: float | int
    units: str = ""
    label: int = 0
    segment_name: str = ""


def sample_cursor(
    volume: Volume,
    ijk: tuple[int, int, int],
    labelmap: LabelMap | None = None,
    segments: SegmentTable | None = None,
) -> CursorSample | None:
    """Sample voxel ``ijk``; None when it lies outside the volume."""
    i, j, k = (int(v) for v in ijk)
    nx, ny, nz = volume.geometry.size_xyz
    if not (0 <= i < nx and 0 <= j < ny and 0 <= k < nz):
        return None
    lps = volume.geometry.index_to_physical((i, j, k))
    label = 0
    name = ""
    if labelmap is not None and labelmap.shape == volume.shape:
        label = int(labelmap.array[k, j, i])
        if label:
            segment = segments.get(label) if segments is not None else None
            name = segment.name if segment is not None else f"label {label}"
    return CursorSample(
        ijk=(i, j, k),
        lps_mm=(float(lps[0]), float(lps[1]), float(lps[2])),
        value=volume.value_at((i, j, k)),
        units=volume.info.units,
        label=label,
        segment_name=name,
    )


def format_intensity(value, units: str = "") -> str:
    """Integers as they are, floats with 6 significant digits, plus units if known."""
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        text = f"{int(value)}"
    else:
        text = f"{float(value):.6g}"
    return f"{text} {units}" if units else text


def format_cursor_readout(sample: CursorSample | None) -> str:
    """One status-bar line, e.g. 'Voxel (96, 80, 48)   LPS (0.80, -24.80, 0.00) mm   40 HU   [1] liver'."""
    if sample is None:
        return ""
    i, j, k = sample.ijk
    x, y, z = sample.lps_mm
    parts = [
        f"Voxel ({i}, {j}, {k})",
        f"LPS ({x:.2f}, {y:.2f}, {z:.2f}) mm",
        format_intensity(sample.value, sample.units),
    ]
    if sample.label:
        parts.append(f"[{sample.label}] {sample.segment_name}")
    return "   ".join(parts)


def format_slice_counter(index: int, count: int) -> str:
    """'Slice 48 / 96': the 0-based index shown in the voxel readout, and the slice count."""
    return f"Slice {index} / {count}"
