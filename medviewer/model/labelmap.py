"""Label map: the single source of truth for every segment's voxels."""

from __future__ import annotations

import numpy as np

from medviewer.model.events import Box, Event
from medviewer.model.geometry import Geometry


class GridMismatchError(ValueError):
    """A label map or mask does not lie on the volume's voxel grid."""


class LabelMap:
    """Integer labels on exactly one volume's grid; 0 is background.

    uint8 holds 255 segments; ``ensure_capacity`` promotes to uint16 when more are needed.
    Every write goes through this class so ``changed`` can report the touched region:
    views re-upload only that box.
    """

    def __init__(self, geometry: Geometry, array: np.ndarray | None = None):
        if array is None:
            array = np.zeros(geometry.shape, dtype=np.uint8)
        else:
            array = np.asarray(array)
            if array.ndim == 2:
                array = array[np.newaxis]
            if tuple(array.shape) != tuple(geometry.shape):
                raise GridMismatchError(
                    f"label array shape {array.shape} does not match the volume grid {geometry.shape}"
                )
            if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_):
                if not np.array_equal(array, np.round(array)):
                    raise ValueError("label maps must hold whole numbers")
            if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
                raise ValueError(f"label values must lie in 0..65535, got {array.min()}..{array.max()}")
            dtype = np.uint8 if (array.size == 0 or array.max() <= 255) else np.uint16
            array = np.ascontiguousarray(array, dtype=dtype)
        self.geometry = geometry
        self.array = array
        #: Called with a :class:`Box` after voxels inside it changed.
        self.changed = Event("labels_changed")

    @classmethod
    def from_other_grid(cls, geometry: Geometry, array: np.ndarray, array_geometry: Geometry) -> LabelMap:
        """Accept labels only when they sit on the same grid; say what differs otherwise."""
        if not geometry.same_grid(array_geometry):
            raise GridMismatchError(
                "the label map is on a different grid than the volume: "
                + geometry.describe_difference(array_geometry)
            )
        return cls(geometry, array)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    def labels_present(self) -> list[int]:
        return [int(v) for v in np.unique(self.array) if v != 0]

    def ensure_capacity(self, label: int) -> None:
        if label > np.iinfo(self.array.dtype).max:
            if label > np.iinfo(np.uint16).max:
                raise ValueError(f"label {label} exceeds the 65535 segment limit")
            self.array = self.array.astype(np.uint16)

    def write(self, box: Box, values: np.ndarray, where: np.ndarray | None = None) -> int:
        """Write ``values`` into ``box`` (only where ``where`` is true); return voxels changed."""
        values = np.asarray(values)
        if values.size and values.max() > 0:
            self.ensure_capacity(int(values.max()))
        region = self.array[box.slices]
        target = np.broadcast_to(values, region.shape)
        diff = region != target
        if where is not None:
            diff &= where
        changed = int(np.count_nonzero(diff))
        if changed:
            region[diff] = target[diff]
            self.changed.emit(box)
        return changed

    def paint(self, mask: np.ndarray, label: int, offset: tuple[int, int, int] = (0, 0, 0)) -> int:
        """Set ``label`` where ``mask`` is true; ``mask`` starts at ``offset`` (z, y, x)."""
        box = Box(tuple(offset), tuple(o + s for o, s in zip(offset, mask.shape)))  # type: ignore[arg-type]
        return self.write(box, np.asarray(label, dtype=np.int64), where=mask)

    def notify(self, box: Box | None = None) -> None:
        """Announce an in-place edit done directly on ``array``."""
        self.changed.emit(box or Box.full(self.shape))

    def count(self, label: int) -> int:
        return int(np.count_nonzero(self.array == label))
