"""Colour table for the label overlay, built from a SegmentTable.

The table has one RGBA entry per possible label value of the label map's dtype (256 for
uint8, 65536 for uint16), so any voxel value indexes it directly and a label that has no
segment entry yet still shows up (in its default colour) instead of being clamped to an
unrelated colour.
"""

from __future__ import annotations

import numpy as np

from medviewer.model.segments import DEFAULT_COLORS, SegmentTable

#: Overlay opacity of a visible segment; the scan stays readable underneath.
DEFAULT_LABEL_ALPHA = 0.5


def label_table_size(dtype) -> int:
    """Number of table entries needed to index every value of an integer label dtype."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 2
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"label maps hold integers, got {dtype}")
    return int(np.iinfo(dtype).max) + 1 if dtype.itemsize <= 2 else 65536


def build_label_colors(segments: SegmentTable | None, size: int = 256, alpha: float = DEFAULT_LABEL_ALPHA) -> np.ndarray:
    """RGBA floats in 0..1, shape (size, 4): entry ``v`` is how label value ``v`` is drawn.

    Label 0 (background) and hidden segments are fully transparent; labels without a
    segment entry get the default colour the table would give them.
    """
    if size < 1:
        raise ValueError("the colour table needs at least one entry")
    alpha = float(np.clip(alpha, 0.0, 1.0))
    defaults = np.asarray(DEFAULT_COLORS, dtype=float) / 255.0
    colors = np.empty((size, 4), dtype=float)
    labels = np.arange(size)
    colors[:, :3] = defaults[(labels - 1) % len(defaults)]
    colors[:, 3] = alpha
    colors[0] = (0.0, 0.0, 0.0, 0.0)
    for segment in segments or ():
        if 0 < segment.label < size:
            colors[segment.label, :3] = np.asarray(segment.color, dtype=float) / 255.0
            colors[segment.label, 3] = alpha if segment.visible else 0.0
    return colors


def make_lookup_table(colors: np.ndarray):
    """A vtkLookupTable where scalar value ``v`` picks ``colors[v]`` exactly.

    The table range is (-0.5, n - 0.5) so each integer falls in the middle of its own bin.
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonCore import vtkLookupTable

    colors = np.asarray(colors, dtype=float)
    table = vtkLookupTable()
    table.SetNumberOfTableValues(len(colors))
    table.SetTableRange(-0.5, len(colors) - 0.5)
    rgba = np.ascontiguousarray(np.rint(colors * 255.0).astype(np.uint8))
    table.SetTable(numpy_to_vtk(rgba, deep=True, array_type=None))
    table.SetRampToLinear()
    table.Build()
    return table
