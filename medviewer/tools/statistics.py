"""Per-segment statistics: size, volume in mL, intensity summary, bounding box."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from medviewer.jobs import JobControl, ensure_control


@dataclass
class SegmentStatistics:
    label: int
    name: str
    voxel_count: int
    volume_mm3: float
    volume_ml: float
    mean: float
    std: float
    min: float
    max: float
    bbox_min_ijk: tuple[int, int, int] | None  # first voxel (i, j, k), inclusive
    bbox_max_ijk: tuple[int, int, int] | None  # last voxel (i, j, k), inclusive
    centroid_lps: tuple[float, float, float] | None

    def as_row(self) -> dict:
        return asdict(self)


def compute_statistics(
    labels: np.ndarray,
    geometry,
    segments=None,
    intensities: np.ndarray | None = None,
    label_values: list[int] | None = None,
    control: JobControl | None = None,
) -> list[SegmentStatistics]:
    """Statistics for each segment (table order) or each label present.

    Work is limited to each label's bounding box (found in one pass), so statistics of a
    few organs on a 512x512x300 scan take well under a second. Segments without voxels are
    listed with zero size and NaN intensities.
    """
    control = ensure_control(control)
    labels = np.asarray(labels)
    if label_values is None:
        if segments is not None and len(segments):
            label_values = [s.label for s in segments]
        else:
            label_values = [int(v) for v in np.unique(labels) if v != 0]
    boxes = ndimage.find_objects(labels) if labels.size else []
    voxel_mm3 = geometry.voxel_volume_mm3
    rows = []
    for n, label in enumerate(label_values):
        control.report(n, len(label_values), "Computing statistics")
        segment = segments.get(label) if segments is not None else None
        name = segment.name if segment is not None else f"Label {label}"
        box = boxes[label - 1] if 0 < label <= len(boxes) else None
        mask = labels[box] == label if box is not None else None
        count = int(np.count_nonzero(mask)) if mask is not None else 0
        if count == 0:
            rows.append(SegmentStatistics(label, name, 0, 0.0, 0.0, math.nan, math.nan, math.nan, math.nan, None, None, None))
            continue
        coords = np.nonzero(mask)
        zyx = np.stack([c + s.start for c, s in zip(coords, box)], axis=1)
        low = zyx.min(axis=0)
        high = zyx.max(axis=0)
        centroid = geometry.index_to_physical(zyx.mean(axis=0)[::-1])
        if intensities is not None:
            values = intensities[box][mask].astype(np.float64)
            mean, std, vmin, vmax = float(values.mean()), float(values.std()), float(values.min()), float(values.max())
        else:
            mean = std = vmin = vmax = math.nan
        volume = count * voxel_mm3
        rows.append(SegmentStatistics(
            label, name, count, volume, volume / 1000.0, mean, std, vmin, vmax,
            tuple(int(v) for v in low[::-1]), tuple(int(v) for v in high[::-1]),  # type: ignore[arg-type]
            tuple(float(v) for v in centroid),  # type: ignore[arg-type]
        ))
    control.report(len(label_values), len(label_values), "Statistics ready")
    return rows
