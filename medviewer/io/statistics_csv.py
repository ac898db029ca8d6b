"""Segment statistics as CSV: one row per segment, units in the column names."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

from medviewer.io.safety import check_output, write_text_atomic

COLUMNS = (
    "label", "name", "voxel_count", "volume_mm3", "volume_ml", "mean", "std", "min", "max",
    "bbox_min_i", "bbox_min_j", "bbox_min_k", "bbox_max_i", "bbox_max_j", "bbox_max_k",
    "centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_lps_z_mm",
)


def _value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".10g")
    return str(value)


def format_statistics_csv(rows: Iterable) -> str:
    """CSV text for :class:`~medviewer.tools.statistics.SegmentStatistics` rows (or dicts with their fields)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        data = row if isinstance(row, dict) else row.as_row()
        low = data.get("bbox_min_ijk") or (None, None, None)
        high = data.get("bbox_max_ijk") or (None, None, None)
        centroid = data.get("centroid_lps") or (None, None, None)
        writer.writerow([_value(v) for v in (
            data["label"], data["name"], data["voxel_count"], data["volume_mm3"], data["volume_ml"],
            data["mean"], data["std"], data["min"], data["max"], *low, *high, *centroid,
        )])
    return out.getvalue()


def write_statistics_csv(path: str | Path, rows: Iterable, overwrite: bool = False, protected: Iterable = ()) -> Path:
    path = check_output(path, overwrite, protected)
    return write_text_atomic(path, format_statistics_csv(rows))
