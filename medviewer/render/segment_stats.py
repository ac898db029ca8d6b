"""Voxel counts and volumes per label, kept up to date from changed boxes (no Qt, no VTK).

Counting a 512x512x300 label map from scratch after every brush stroke would cost a
noticeable fraction of a second; instead the counts are kept per axial slice and only the
slices a ``LabelMap.changed`` box touches are recounted.
"""

from __future__ import annotations

import numpy as np

from medviewer.model.events import Box


class LabelCounter:
    """Per-slice histograms of a (z, y, x) label array; ``counts()`` sums them."""

    def __init__(self):
        self._source: np.ndarray | None = None
        self._per_slice = np.zeros((0, 1), dtype=np.int32)

    def reset(self, array: np.ndarray | None) -> None:
        """Count ``array`` from scratch (a new or replaced label map)."""
        self._source = array
        if array is None:
            self._per_slice = np.zeros((0, 1), dtype=np.int32)
            return
        self._per_slice = np.zeros((array.shape[0], 1), dtype=np.int32)
        if array.any():  # a new, empty label map (the common case on load) needs no histograms
            self._recount(0, array.shape[0])

    def update(self, array: np.ndarray, box: Box | None = None) -> None:
        """Recount the slices ``box`` touches (all of them for a new array or no box)."""
        if array is not self._source or box is None or self._per_slice.shape[0] != array.shape[0]:
            self.reset(array)
            return
        z0, z1 = max(box.start[0], 0), min(box.stop[0], array.shape[0])
        if z1 > z0:
            self._recount(z0, z1)

    def _recount(self, z0: int, z1: int) -> None:
        array = self._source
        for z in range(z0, z1):
            histogram = np.bincount(array[z].ravel())
            if histogram.size > self._per_slice.shape[1]:
                grown = np.zeros((self._per_slice.shape[0], histogram.size), dtype=np.int32)
                grown[:, : self._per_slice.shape[1]] = self._per_slice
                self._per_slice = grown
            self._per_slice[z, :] = 0
            self._per_slice[z, : histogram.size] = histogram

    def counts(self) -> dict[int, int]:
        """Voxel count of every non-zero label present."""
        totals = self._per_slice.sum(axis=0, dtype=np.int64)
        return {int(label): int(totals[label]) for label in np.flatnonzero(totals) if label != 0}


def volume_ml(voxel_count: int, voxel_volume_mm3: float) -> float:
    """Millilitres of ``voxel_count`` voxels (1 mL = 1000 mm^3)."""
    return voxel_count * voxel_volume_mm3 / 1000.0


def format_volume_ml(millilitres: float) -> str:
    """'0', '0.042', '3.57', '1250.4': enough digits for tiny lesions and whole organs."""
    if millilitres == 0:
        return "0"
    if millilitres < 1:
        return f"{millilitres:.3f}"
    if millilitres < 100:
        return f"{millilitres:.2f}"
    return f"{millilitres:.1f}"
