"""Physical geometry of a voxel grid in the ITK/DICOM LPS convention.

Arrays are stored in numpy order (k, j, i) = (z, y, x), exactly as SimpleITK's
``GetArrayFromImage`` returns them. Spacing, origin and the direction matrix are in ITK
order (x, y, z): column ``c`` of ``direction`` is the LPS unit vector of index axis ``c``.
A voxel index ``(i, j, k)`` maps to ``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Tolerance when deciding two grids are the same (mm, and unitless for direction).
GRID_TOLERANCE = 1e-4


def _as_tuple(values, length: int, name: str) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size != length:
        raise ValueError(f"{name} needs {length} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values: {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Geometry:
    """Shape (numpy order) plus spacing, origin and direction (ITK order, LPS, mm)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"geometry needs a 3D shape with positive sizes, got {self.shape}")
        spacing = _as_tuple(self.spacing, 3, "spacing")
        if min(spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {spacing}")
        direction = _as_tuple(self.direction, 9, "direction")
        matrix = np.asarray(direction).reshape(3, 3)
        if abs(abs(np.linalg.det(matrix)) - 1.0) > 1e-3:
            raise ValueError(f"direction is not orthonormal: {direction}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _as_tuple(self.origin, 3, "origin"))
        object.__setattr__(self, "direction", direction)

    # -- derived ------------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (ITK's ``GetSize`` order)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping (i, j, k, 1) to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    # -- conversions --------------------------------------------------------------------
    def index_to_physical(self, ijk) -> np.ndarray:
        """Continuous index (i, j, k) -> LPS point in mm. Accepts (3,) or (N, 3)."""
        ijk = np.asarray(ijk, dtype=float)
        scaled = ijk * np.asarray(self.spacing)
        return scaled @ self.direction_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, point) -> np.ndarray:
        """LPS point in mm -> continuous index (i, j, k). Accepts (3,) or (N, 3)."""
        point = np.asarray(point, dtype=float)
        local = (point - np.asarray(self.origin)) @ self.direction_matrix  # inverse = transpose
        return local / np.asarray(self.spacing)

    def physical_to_nearest_index(self, point) -> tuple[int, int, int] | None:
        """Nearest voxel (i, j, k) to an LPS point, or None when it falls outside the grid."""
        ijk = np.rint(self.physical_to_index(point)).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(self.size_xyz)):
            return None
        return int(ijk[0]), int(ijk[1]), int(ijk[2])

    def same_grid(self, other: Geometry, tolerance: float = GRID_TOLERANCE) -> bool:
        """True when both grids put every voxel at the same physical place."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tolerance, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tolerance, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tolerance, rtol=0)
        )

    def describe_difference(self, other: Geometry) -> str:
        """Human-readable list of what differs between two grids (for error messages)."""
        parts = []
        if self.shape != other.shape:
            parts.append(f"size {self.size_xyz} vs {other.size_xyz}")
        for name in ("spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if not np.allclose(mine, theirs, atol=GRID_TOLERANCE, rtol=0):
                parts.append(f"{name} {_fmt(mine)} vs {_fmt(theirs)}")
        return "; ".join(parts) or "identical"

    def axis_codes(self) -> str:
        """Closest anatomical direction letter for each index axis, e.g. 'LPS' or 'LSP'."""
        letters = ("LR", "PA", "SI")  # LPS positive direction first
        codes = []
        for column in self.direction_matrix.T:
            axis = int(np.argmax(np.abs(column)))
            codes.append(letters[axis][0] if column[axis] > 0 else letters[axis][1])
        return "".join(codes)

    def is_oblique(self, tolerance: float = 1e-3) -> bool:
        matrix = np.abs(self.direction_matrix)
        return bool(np.any((matrix > tolerance) & (matrix < 1 - tolerance)))

    def with_shape(self, shape) -> Geometry:
        return Geometry(tuple(shape), self.spacing, self.origin, self.direction)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
