"""Resampling between a volume's grid and a model's working grid (Qt-free, SimpleITK).

3D models work on their own grids: SAM-Med3D on a 128^3 crop at 1.5 mm in RAS orientation,
MedLAM on the whole scan at 3 mm in LAS orientation. A :class:`Grid` describes such a grid
in the ITK/DICOM LPS convention used everywhere in medviewer (spacing, origin and the direction
matrix in (x, y, z) order; column ``c`` of ``direction`` is the LPS unit vector of index axis
``c``). Arrays are numpy ``[k, j, i]`` (= ``[z, y, x]``) as SimpleITK returns them; models that
want their tensors in ``(i, j, k)`` order transpose with ``array.transpose(2, 1, 0)``.

Only the part of a volume a target grid can see is converted and resampled, so cropping a
small box out of a large CT costs milliseconds, not a copy of the whole scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: LPS unit vector each orientation letter points to.
_LETTER_VECTORS = {
    "L": np.array([1.0, 0.0, 0.0]),
    "R": np.array([-1.0, 0.0, 0.0]),
    "P": np.array([0.0, 1.0, 0.0]),
    "A": np.array([0.0, -1.0, 0.0]),
    "S": np.array([0.0, 0.0, 1.0]),
    "I": np.array([0.0, 0.0, -1.0]),
}


@dataclass(frozen=True)
class Grid:
    """A voxel grid in physical space: ``size`` is (i, j, k) like ITK's ``GetSize``."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in np.asarray(self.direction).ravel()))
        if len(self.size) != 3 or min(self.size) < 1:
            raise ValueError(f"a grid needs three positive sizes, got {self.size}")
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def of(cls, geometry: Any = None, shape: tuple[int, ...] | None = None, spacing=None) -> Grid:
        """The grid of a :class:`medviewer.model.Geometry` (or any object with shape, spacing,
        origin and direction), or of a bare ``[z, y, x]`` array shape with ``spacing`` (x, y, z)."""
        if geometry is not None:
            nz, ny, nx = (int(v) for v in geometry.shape)
            return cls(
                (nx, ny, nz),
                tuple(geometry.spacing),
                tuple(getattr(geometry, "origin", (0.0, 0.0, 0.0))),
                tuple(getattr(geometry, "direction", _IDENTITY)),
            )
        if shape is None:
            raise ValueError("give a geometry or an array shape")
        nz, ny, nx = (int(v) for v in shape)
        return cls((nx, ny, nz), tuple(spacing or (1.0, 1.0, 1.0)))

    @classmethod
    def centred(
        cls,
        centre_lps,
        size: tuple[int, int, int],
        spacing: tuple[float, float, float],
        direction,
        centre_index: tuple[float, float, float] | None = None,
    ) -> Grid:
        """A grid whose (continuous) index ``centre_index`` (default: ``size // 2``) lies on
        the physical point ``centre_lps``."""
        if centre_index is None:
            centre_index = tuple(float(n // 2) for n in size)
        matrix = np.asarray(direction, dtype=float).reshape(3, 3)
        offset = matrix @ (np.asarray(spacing, dtype=float) * np.asarray(centre_index, dtype=float))
        return cls(
            tuple(size), tuple(spacing), tuple(np.asarray(centre_lps, dtype=float) - offset), tuple(matrix.ravel())
        )

    # -- properties ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """numpy order (k, j, i)."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical(self, ijk) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=float)
        return (ijk * np.asarray(self.spacing)) @ self.direction_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, point) -> np.ndarray:
        point = np.asarray(point, dtype=float)
        return ((point - np.asarray(self.origin)) @ self.direction_matrix) / np.asarray(self.spacing)

    def corners(self) -> np.ndarray:
        """Physical positions of the 8 outer voxel *edges* (half a voxel beyond the centres)."""
        lows = np.full(3, -0.5)
        highs = np.asarray(self.size, dtype=float) - 0.5
        ijk = np.array([[(highs if (n >> a) & 1 else lows)[a] for a in range(3)] for n in range(8)])
        return self.index_to_physical(ijk)

    def subgrid(self, start_ijk, size_ijk) -> Grid:
        """The grid of ``array[k0:k1, j0:j1, i0:i1]`` starting at index ``start_ijk``."""
        origin = self.index_to_physical(np.asarray(start_ijk, dtype=float))
        return Grid(tuple(size_ijk), self.spacing, tuple(origin), self.direction)

    def region_covering(self, other: Grid, margin: int = 1) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """Index box ``(start_ijk, stop_ijk)`` (stop exclusive) of this grid that covers the
        physical extent of ``other`` plus ``margin`` voxels, clipped; None if they do not meet."""
        ijk = self.physical_to_index(other.corners())
        start = np.floor(ijk.min(axis=0)).astype(int) - margin
        stop = np.ceil(ijk.max(axis=0)).astype(int) + 1 + margin
        start = np.maximum(start, 0)
        stop = np.minimum(stop, np.asarray(self.size))
        if np.any(stop <= start):
            return None
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)  # type: ignore[return-value]


# -- orientation ----------------------------------------------------------------------------------
def oriented_direction(direction, codes: str) -> np.ndarray:
    """Direction matrix with the index axes permuted and flipped so that axis ``n`` points
    (as closely as the scan allows) toward ``codes[n]`` (e.g. "RAS", "LAS", "LPS").

    This is what nibabel's ``as_reoriented`` / torchio's ``ToCanonical`` do: the voxel axes are
    only reordered and mirrored, an oblique scan stays oblique.
    """
    codes = codes.upper()
    if len(codes) != 3 or any(c not in _LETTER_VECTORS for c in codes):
        raise ValueError(f"orientation codes must be three letters from LRPAIS, got {codes!r}")
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    targets = np.stack([_LETTER_VECTORS[c] for c in codes])  # row n: where axis n should point
    # Greedy assignment on |cosine|, largest first (the same result as nibabel for sane scans).
    scores = np.abs(targets @ matrix)  # [target axis, source column]
    chosen: dict[int, int] = {}
    for flat in np.argsort(-scores, axis=None):
        t, s = divmod(int(flat), 3)
        if t in chosen or s in chosen.values():
            continue
        chosen[t] = s
    result = np.zeros((3, 3))
    for t, s in chosen.items():
        column = matrix[:, s]
        result[:, t] = column if float(targets[t] @ column) >= 0 else -column
    return result


# -- SimpleITK bridges ----------------------------------------------------------------------------
def _sitk():
    import SimpleITK as sitk

    return sitk


def image_from_array(array_kji: np.ndarray, grid: Grid):
    """A SimpleITK image of ``array_kji`` (numpy [k, j, i]) placed on ``grid``."""
    sitk = _sitk()
    array = np.ascontiguousarray(array_kji)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


_INTERPOLATORS = {"linear": "sitkLinear", "nearest": "sitkNearestNeighbor", "bspline": "sitkBSpline"}


def resample(
    array_kji: np.ndarray,
    source: Grid,
    target: Grid,
    interpolator: str = "linear",
    default: float = 0.0,
    dtype=np.float32,
) -> np.ndarray:
    """Sample ``array_kji`` (on ``source``) at the voxel centres of ``target``.

    Points outside the source get ``default``. Only the part of the source the target can
    see is handed to SimpleITK.
    """
    sitk = _sitk()
    array_kji = np.asarray(array_kji)
    if tuple(array_kji.shape) != source.shape:
        raise ValueError(f"array shape {array_kji.shape} does not match the grid {source.shape}")
    region = source.region_covering(target, margin=2)
    if region is None:
        return np.full(target.shape, default, dtype=dtype)
    (i0, j0, k0), (i1, j1, k1) = region
    part = array_kji[k0:k1, j0:j1, i0:i1]
    if part.dtype == np.bool_:
        part = part.astype(np.uint8)
    elif part.dtype == np.float16:
        part = part.astype(np.float32)
    image = image_from_array(part, source.subgrid((i0, j0, k0), (i1 - i0, j1 - j0, k1 - k0)))
    name = _INTERPOLATORS.get(interpolator)
    if name is None:
        raise ValueError(f"unknown interpolator {interpolator!r}; use one of {sorted(_INTERPOLATORS)}")
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(target.size)
    resampler.SetOutputSpacing(target.spacing)
    resampler.SetOutputOrigin(target.origin)
    resampler.SetOutputDirection(target.direction)
    resampler.SetInterpolator(getattr(sitk, name))
    resampler.SetDefaultPixelValue(float(default))
    if interpolator != "nearest":
        resampler.SetOutputPixelType(sitk.sitkFloat32)
    result = sitk.GetArrayFromImage(resampler.Execute(image))
    return result.astype(dtype, copy=False)


def paste_onto(
    array_kji: np.ndarray,
    source: Grid,
    target: Grid,
    interpolator: str = "nearest",
    default: float = 0.0,
    dtype=np.bool_,
) -> np.ndarray:
    """Bring a small array (a model's crop) back onto a large grid (the volume).

    Only the target voxels inside the source's extent are resampled; the rest get
    ``default``. Returns an array of ``target.shape``.
    """
    out = np.full(target.shape, default, dtype=dtype)
    region = target.region_covering(source, margin=1)
    if region is None:
        return out
    (i0, j0, k0), (i1, j1, k1) = region
    sub = target.subgrid((i0, j0, k0), (i1 - i0, j1 - j0, k1 - k0))
    values = resample(array_kji, source, sub, interpolator=interpolator, default=default, dtype=np.float32)
    out[k0:k1, j0:j1, i0:i1] = values.astype(dtype) if dtype is not np.bool_ else values > 0.5
    return out


def resampled_size(grid: Grid, spacing: tuple[float, float, float], direction) -> tuple[tuple[int, int, int], Grid]:
    """Size and grid covering ``grid``'s whole extent at a new ``spacing`` and ``direction``.

    The new grid's first voxel centre sits half a new voxel inside the old grid's outer corner,
    so the field of view is kept (the usual "resample to isotropic" convention).
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    corners = grid.corners() @ matrix  # coordinates along the new axes
    low, high = corners.min(axis=0), corners.max(axis=0)
    size = tuple(max(1, int(math.ceil((high[a] - low[a]) / spacing[a] - 1e-6))) for a in range(3))
    origin = matrix @ (low + 0.5 * np.asarray(spacing, dtype=float))
    return size, Grid(size, tuple(spacing), tuple(origin), tuple(matrix.ravel()))  # type: ignore[arg-type]
