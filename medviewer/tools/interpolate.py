"""Fill between slices: the user outlines a structure on a few slices, the gaps are filled.

Shape-based interpolation: each drawn slice becomes a signed distance map (negative
inside, in millimetres), the maps of two neighbouring drawn slices are blended linearly
for every empty slice between them, and the blend's negative part is the filled shape.
Shapes that shift or change size between slices morph smoothly; a structure that appears
on one drawn slice only is not extended. The result is a :class:`Preview` that the user
accepts (one undo step) or discards.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medviewer.model.editing import EditRefused, LabelCommand, SegmentEditor
from medviewer.model.events import Box
from medviewer.tools.base import Preview, label_box, spacing_zyx


def _signed_distance(mask2d: np.ndarray, spacing2d) -> np.ndarray:
    outside = ndimage.distance_transform_edt(~mask2d, sampling=spacing2d)
    inside = ndimage.distance_transform_edt(mask2d, sampling=spacing2d)
    return outside - inside


def interpolate_slices(mask: np.ndarray, axis: int, spacing_zyx_mm) -> np.ndarray:
    """Voxels to add on empty slices lying between drawn slices of ``mask`` along ``axis``."""
    spacing2d = [s for a, s in enumerate(spacing_zyx_mm) if a != axis]
    moved = np.moveaxis(mask, axis, 0)
    drawn = np.flatnonzero(moved.reshape(moved.shape[0], -1).any(axis=1))
    filled = np.zeros_like(moved, dtype=bool)
    for a, b in zip(drawn[:-1], drawn[1:]):
        if b - a < 2:
            continue
        sd_a = _signed_distance(moved[a], spacing2d)
        sd_b = _signed_distance(moved[b], spacing2d)
        for k in range(a + 1, b):
            t = (k - a) / (b - a)
            filled[k] = (1.0 - t) * sd_a + t * sd_b < 0
    return np.moveaxis(filled, 0, axis)


class FillBetweenSlicesTool:
    """Preview the interpolated slices of a segment, then accept them."""

    name = "fill between slices"

    def __init__(self, editor: SegmentEditor, axis: int = 0):
        self.editor = editor
        self.axis = int(axis)

    def preview(self, label: int | None = None, axis: int | None = None) -> Preview | None:
        """The voxels the interpolation would add (None when fewer than two slices are drawn)."""
        label = self.editor.policy.active_label if label is None else label
        if label is None:
            raise EditRefused("select a segment first")
        axis = self.axis if axis is None else int(axis)
        array = self.editor.labelmap.array
        box = label_box(array, label)
        if box is None:
            return None
        # Pad in-plane so the distance maps see background around the shapes.
        pad = [2, 2, 2]
        pad[axis] = 0
        start = tuple(max(0, a - p) for a, p in zip(box.start, pad))
        stop = tuple(min(n, b + p) for n, b, p in zip(array.shape, box.stop, pad))
        box = Box(start, stop)  # type: ignore[arg-type]
        added = interpolate_slices(array[box.slices] == label, axis, spacing_zyx(self.editor.geometry))
        tight = Box.from_mask(added)
        if tight is None:
            return None
        out = tight.shifted(box.start)
        return Preview(out, added[tight.slices], int(label), self.name, {"axis": "zyx"[axis], "method": "signed distance"})

    def accept(self, preview: Preview) -> LabelCommand | None:
        """Write the previewed voxels (one undo step; the edit policy still applies)."""
        return self.editor.apply(preview.mask, preview.box, preview.label, tool=self.name, parameters=preview.parameters)
