"""Fill holes, smooth, and grow or shrink a segment by a margin in millimetres.

Every operation works on the segment's bounding box padded by its reach, so a small
segment on a large scan stays cheap; kernels are ellipsoids in physical units so a 3 mm
margin is 3 mm along every axis of an anisotropic grid.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from scipy import ndimage

from medviewer.model.editing import EditRefused, LabelCommand, SegmentEditor
from medviewer.tools.base import ellipsoid_kernel, label_box, pad_box, radius_in_voxels, spacing_zyx


class SmoothingMethod(StrEnum):
    MEDIAN = "median"  # majority vote in a ball: removes spikes and fills pits
    OPENING = "opening"  # removes thin protrusions and specks
    CLOSING = "closing"  # fills narrow gaps and dents


def fill_holes(mask: np.ndarray, slice_axis: int | None = None) -> np.ndarray:
    """Fill cavities fully enclosed by the mask (in 3D, or slice by slice along ``slice_axis``)."""
    if slice_axis is None:
        return ndimage.binary_fill_holes(mask)
    out = np.empty_like(mask, dtype=bool)
    for k in range(mask.shape[slice_axis]):
        index = [slice(None)] * 3
        index[slice_axis] = k
        out[tuple(index)] = ndimage.binary_fill_holes(mask[tuple(index)])
    return out


def median_smooth(mask: np.ndarray, kernel_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Majority vote over a ball of radius ``kernel_mm / 2`` (a binary median filter)."""
    kernel = ellipsoid_kernel(kernel_mm / 2.0, spacing)
    counts = ndimage.convolve(mask.astype(np.uint16), kernel.astype(np.uint16), mode="constant")
    return counts * 2 > int(kernel.sum())


def open_close(mask: np.ndarray, kernel_mm: float, spacing: np.ndarray, method: SmoothingMethod) -> np.ndarray:
    kernel = ellipsoid_kernel(kernel_mm / 2.0, spacing)
    if method == SmoothingMethod.OPENING:
        return ndimage.binary_opening(mask, kernel)
    return ndimage.binary_closing(mask, kernel, border_value=0)


def apply_margin(mask: np.ndarray, margin_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Grow (positive) or shrink (negative) by an exact Euclidean distance in millimetres."""
    if margin_mm > 0:
        return ndimage.distance_transform_edt(~mask, sampling=spacing) <= margin_mm + 1e-6
    if margin_mm < 0:
        return ndimage.distance_transform_edt(mask, sampling=spacing) > -margin_mm + 1e-6
    return mask.copy()


class MorphologyTool:
    """Hole filling, smoothing and margin for the active (or given) segment."""

    name = "morphology"

    def __init__(self, editor: SegmentEditor):
        self.editor = editor

    def _segment(self, label: int | None, reach_mm: float):
        label = self.editor.policy.active_label if label is None else label
        if label is None:
            raise EditRefused("select a segment first")
        array = self.editor.labelmap.array
        box = label_box(array, label)
        if box is None:
            return label, None, None
        spacing = spacing_zyx(self.editor.geometry)
        box = pad_box(box, radius_in_voxels(reach_mm, spacing) + 1, array.shape)
        return label, box, array[box.slices] == label

    def fill_holes(self, label: int | None = None, slice_axis: int | None = None) -> LabelCommand | None:
        label, box, mask = self._segment(label, 0.0)
        if mask is None:
            return None
        return self.editor.replace_segment(fill_holes(mask, slice_axis), box, label, tool="fill holes",
                                           parameters={"slice_axis": None if slice_axis is None else "zyx"[slice_axis]})

    def smooth(self, method: SmoothingMethod | str = SmoothingMethod.MEDIAN, kernel_mm: float = 3.0,
               label: int | None = None) -> LabelCommand | None:
        method = SmoothingMethod(method)
        label, box, mask = self._segment(label, kernel_mm)
        if mask is None:
            return None
        spacing = spacing_zyx(self.editor.geometry)
        if method == SmoothingMethod.MEDIAN:
            result = median_smooth(mask, kernel_mm, spacing)
        else:
            result = open_close(mask, kernel_mm, spacing, method)
        return self.editor.replace_segment(result, box, label, tool=f"smoothing ({method})",
                                           parameters={"method": str(method), "kernel_mm": float(kernel_mm)})

    def margin(self, margin_mm: float, label: int | None = None) -> LabelCommand | None:
        """Grow (positive mm) or shrink (negative mm) the segment."""
        label, box, mask = self._segment(label, abs(margin_mm))
        if mask is None or margin_mm == 0:
            return None
        result = apply_margin(mask, float(margin_mm), spacing_zyx(self.editor.geometry))
        return self.editor.replace_segment(result, box, label, tool="grow" if margin_mm > 0 else "shrink",
                                           parameters={"margin_mm": float(margin_mm)})
