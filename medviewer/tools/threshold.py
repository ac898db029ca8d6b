"""Threshold a segment from an intensity range, with a cheap live preview."""

from __future__ import annotations

import numpy as np

from medviewer.model.editing import LabelCommand, SegmentEditor
from medviewer.model.events import Box
from medviewer.model.provenance import SlicePlane
from medviewer.tools.base import Preview, flat_to_box_mask, is_oblique_plane, plane_slab_voxels


def threshold_mask(intensities: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels whose value lies in [low, high] (bounds swapped when given backwards)."""
    low, high = (low, high) if low <= high else (high, low)
    return (intensities >= low) & (intensities <= high)


class ThresholdTool:
    """Preview on the viewed slice while the user drags the range; apply to the whole scan."""

    name = "threshold"

    def __init__(self, editor: SegmentEditor):
        if editor.volume is None:
            raise ValueError("thresholding needs the scan's intensities (editor.volume)")
        self.editor = editor

    def preview(self, low: float, high: float, plane: SlicePlane | None = None) -> Preview:
        """Mask of [low, high] on one slice (fast, for live feedback) or the whole volume.

        An oblique ``plane`` previews the voxels that plane cuts (the brush's slab), not the
        nearest array slice.
        """
        shape = self.editor.labelmap.shape
        label = self.editor.policy.active_label or 0
        parameters = {"low": float(low), "high": float(high)}
        if is_oblique_plane(self.editor.geometry, plane):
            slab = plane_slab_voxels(self.editor.geometry, plane)
            inside = slab[threshold_mask(np.take(self.editor.volume.array, slab), low, high)]
            box, mask = flat_to_box_mask(shape, inside) or (Box((0, 0, 0), (0, 0, 0)), np.zeros((0, 0, 0), bool))
            return Preview(box, mask, label, self.name, {**parameters, "plane": plane.as_dict()})
        if plane is None:
            box = Box.full(shape)
        else:
            start = [0, 0, 0]
            stop = list(shape)
            start[plane.axis], stop[plane.axis] = plane.index, plane.index + 1
            box = Box(tuple(start), tuple(stop))  # type: ignore[arg-type]
        mask = threshold_mask(self.editor.volume.array[box.slices], low, high)
        return Preview(box, mask, label, self.name, parameters)

    def apply(self, low: float, high: float, replace: bool = True, region: Box | None = None) -> LabelCommand | None:
        """Set the active segment to the voxels in range (``replace``) or add them to it.

        ``region`` limits the operation to a box (e.g. a region of interest).
        """
        box = region or Box.full(self.editor.labelmap.shape)
        mask = threshold_mask(self.editor.volume.array[box.slices], low, high)
        parameters = {"low": float(min(low, high)), "high": float(max(low, high)), "replace": bool(replace)}
        if replace:
            return self.editor.replace_segment(mask, box, tool=self.name, parameters=parameters)
        return self.editor.apply(mask, box, tool=self.name, parameters=parameters)

    def suggest_range(self) -> tuple[float, float]:
        """Otsu's split of the intensities: the bright class as a starting range."""
        from skimage.filters import threshold_otsu

        flat = self.editor.volume.array.reshape(-1)
        sample = flat[:: max(1, flat.size // 1_000_000)]
        split = float(threshold_otsu(sample))
        return split, float(sample.max())
