"""MedLAM localisation: annotated support points on a reference scan -> a 3D box in a new scan.

The procedure follows openmedlab/MedLSAM's "whole-patch localisation" (WPL) inference:

1. Preprocess (:func:`prepare_scan`): reorient to LAS (voxel axes only permuted/mirrored), resample
   to 3 mm isotropic (cubic B-spline, like ``scipy.ndimage.zoom``'s default), map HU piecewise
   linearly [-1000, -200, 200, 1500] -> [0, 0.2, 0.8, 1] (below -1000: 0, above 1500: 1).
   The array is used in numpy order [k, j, i] of the LAS grid (= the reference's
   ``get_fdata().transpose(2, 1, 0)``), padded by 32 voxels of 0 on every side.
2. Support (:meth:`Localizer.support_from_box` / ``support_from_mask``): the six extreme points of
   the structure (lowest and highest slice along each axis; the other two coordinates at the
   middle of that slice's mask, or the box's face centre); a 64^3 patch around each goes through
   MedLAM; its 3-vector is the point's anatomical "code". Several support scans average.
3. Query (:meth:`Localizer.localize`): ten 64^3 patches around the scan centre (+-10 voxels, on
   non-air voxels, fixed random seed) give the query's mean code and mean position (mm); each
   support point lands at ``mean position + [1500, 600, 600] * tanh(support code - query code)``
   (mm, per array axis).
4. Optional refinement ("MSS", multi-scale similarity): around each predicted point the
   decoder's three feature maps of a query patch are compared (cosine) with the support
   features of the central 8^3 (4^3, 2^3) voxels; the best match moves the point. Costly on a
   CPU (the full decoder at 64^3), so by default only used on a GPU.
5. The box: the minimum along axis ``a`` from point ``a``, the maximum from point ``3 + a``,
   mapped back to the scan's voxel indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.resample import Grid, oriented_direction, resample, resampled_size

from .network import MedLAM

SPACING_MM = 3.0
ORIENTATION = "LAS"
HU_POINTS = (-1000.0, -200.0, 200.0, 1500.0)
NORMALISED_POINTS = (0.0, 0.2, 0.8, 1.0)
DISTANCE_RATIO_MM = np.array([1500.0, 600.0, 600.0])  # per array axis (k, j, i)
QUERY_PATCHES = 10
QUERY_JITTER = 10  # voxels around the centre
CENTRE_PATCH = 8  # MSS: support features from the central 8^3 voxels (at 64^3)
RANDOM_SEED = 2023


def piecewise_hu(image: np.ndarray) -> np.ndarray:
    """MedLAM's CT normalisation; values below the first point become 0, above the last 1."""
    image = np.asarray(image, dtype=np.float32)
    out = np.interp(image, HU_POINTS, NORMALISED_POINTS).astype(np.float32)
    out[image < HU_POINTS[0]] = 0.0
    return out


@dataclass
class PreparedScan:
    """A scan on MedLAM's grid: ``image`` is [k, j, i] of ``grid`` (3 mm, LAS), normalised."""

    image: np.ndarray
    grid: Grid
    volume_grid: Grid
    pad: int

    @property
    def padded(self) -> np.ndarray:
        return np.pad(self.image, self.pad, mode="constant", constant_values=0.0)


def prepare_scan(volume: np.ndarray, volume_grid: Grid, patch_size: int = 64) -> PreparedScan:
    """Reorient to LAS, resample to 3 mm, normalise HU (see the module docstring)."""
    direction = oriented_direction(volume_grid.direction, ORIENTATION)
    _, grid = resampled_size(volume_grid, (SPACING_MM,) * 3, direction)
    sampled = resample(volume, volume_grid, grid, interpolator="bspline", default=HU_POINTS[0])
    if float(np.min(sampled)) < -10:  # HU: the reference only normalises data that looks like CT
        sampled = piecewise_hu(sampled)
    return PreparedScan(sampled.astype(np.float32), grid, volume_grid, patch_size // 2)


def extreme_points_from_mask(mask_kji: np.ndarray) -> np.ndarray:
    """(6, 3) points [k, j, i]: lowest slice along axes 0, 1, 2, then the highest; the other two
    coordinates are those of the middle foreground pixel (in raster order) of that slice."""
    nonzero = np.nonzero(mask_kji)
    if nonzero[0].size == 0:
        raise ValueError("the support mask is empty")
    low = [int(v.min()) for v in nonzero]
    high = [int(v.max()) for v in nonzero]
    points = np.zeros((6, 3), dtype=np.int64)
    for side, bounds in enumerate((low, high)):
        for axis in range(3):
            plane = np.take(mask_kji, bounds[axis], axis=axis)
            rows, columns = np.nonzero(plane)
            middle = len(rows) // 2
            others = [a for a in range(3) if a != axis]
            point = np.zeros(3, dtype=np.int64)
            point[axis] = bounds[axis]
            point[others[0]], point[others[1]] = rows[middle], columns[middle]
            points[side * 3 + axis] = point
    return points


def extreme_points_from_box(low_kji, high_kji) -> np.ndarray:
    """(6, 3) face-centre points of a box given by its [k, j, i] corners."""
    low = np.asarray(low_kji, dtype=float)
    high = np.asarray(high_kji, dtype=float)
    centre = (low + high) / 2.0
    points = np.repeat(centre[None], 6, axis=0)
    for axis in range(3):
        points[axis, axis] = low[axis]
        points[3 + axis, axis] = high[axis]
    return np.rint(points).astype(np.int64)


def _crop(padded: np.ndarray, centre, size: int) -> np.ndarray:
    """A size^3 patch of ``padded`` centred on ``centre`` (padded indices); zeros outside."""
    half = size // 2
    out = np.zeros((size, size, size), dtype=np.float32)
    lo = np.asarray(centre, dtype=int) - half
    src = [slice(max(lo[a], 0), min(lo[a] + size, padded.shape[a])) for a in range(3)]
    dst = [slice(s.start - lo[a], s.stop - lo[a]) for a, s in enumerate(src)]
    if all(s.stop > s.start for s in src):
        out[tuple(dst)] = padded[tuple(src)]
    return out


def _centre_crop(feature: torch.Tensor, radius: int) -> torch.Tensor:
    d, h, w = feature.shape[-3:]
    return feature[
        ..., d // 2 - radius : d // 2 + radius, h // 2 - radius : h // 2 + radius, w // 2 - radius : w // 2 + radius
    ]


@dataclass
class SupportSet:
    """Codes (and optionally features) of one structure's six extreme points."""

    name: str
    codes: np.ndarray  # (6, 3), summed over ``count`` support scans
    count: int = 1
    features: dict[str, torch.Tensor] = field(default_factory=dict)  # MSS kernels, summed

    @property
    def mean_codes(self) -> np.ndarray:
        return self.codes / self.count


@dataclass
class Localization:
    box: tuple[float, float, float, float, float, float]  # (x0, y0, z0, x1, y1, z1) volume voxel indices
    extreme_points: np.ndarray  # (6, 3) volume voxel indices (x, y, z)
    points_kji: np.ndarray  # (6, 3) on MedLAM's 3 mm grid
    refined: bool = False


class Localizer:
    """Runs MedLAM; all arrays on the 3 mm LAS grid in [k, j, i] order."""

    def __init__(self, network: MedLAM, device: str = "cpu"):
        self.network = network
        self.device = device
        self.patch = int(network.config.patch_size[0])

    # -- network ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, patches: np.ndarray, features: bool = False) -> dict[str, torch.Tensor]:
        tensor = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))[:, None].to(self.device)
        return self.network(tensor, position=True, features=features)

    # -- support ---------------------------------------------------------------------------------
    def support(self, scan: PreparedScan, points_kji: np.ndarray, name: str, features: bool) -> SupportSet:
        padded = scan.padded
        patches = np.stack([_crop(padded, p + scan.pad, self.patch) for p in points_kji])
        out = self._run(patches, features=features)
        kernels = {}
        if features:
            for key in ("feature0", "feature1", "feature2"):
                feature = out[key]
                zoom = feature.shape[-1] / self.patch
                radius = int(CENTRE_PATCH // 2 * zoom)
                kernels[key] = F.normalize(_centre_crop(feature, radius), dim=1)
        return SupportSet(name, out["position"].float().cpu().numpy().astype(np.float64), 1, kernels)

    def support_from_mask(
        self, scan: PreparedScan, mask_on_grid: np.ndarray, name: str, features: bool = False
    ) -> SupportSet:
        return self.support(scan, extreme_points_from_mask(mask_on_grid), name, features)

    def support_from_box(self, scan: PreparedScan, low_kji, high_kji, name: str, features: bool = False) -> SupportSet:
        return self.support(scan, extreme_points_from_box(low_kji, high_kji), name, features)

    # -- query -----------------------------------------------------------------------------------
    def query_code(self, scan: PreparedScan, seed: int = RANDOM_SEED) -> tuple[np.ndarray, np.ndarray]:
        """(mean code (3,), mean patch centre in mm on the padded grid (3,))."""
        padded = scan.padded
        rng = np.random.default_rng(seed)
        shape = np.asarray(padded.shape)
        centres = []
        for _ in range(QUERY_PATCHES):
            for _attempt in range(1000):
                centre = np.array([rng.integers(n // 2 - QUERY_JITTER, n // 2 + QUERY_JITTER) for n in shape])
                centre = np.clip(centre, 0, shape - 1)
                if padded[tuple(centre)] >= 0.001:
                    break
            centres.append(centre)
        patches = np.stack([_crop(padded, c, self.patch) for c in centres])
        codes = self._run(patches)["position"].float().cpu().numpy().astype(np.float64)
        return codes.mean(axis=0), np.mean(np.asarray(centres, dtype=np.float64) * SPACING_MM, axis=0)

    def refine(self, scan: PreparedScan, points_padded: np.ndarray, support: SupportSet) -> np.ndarray:
        """MSS: move each point to the best feature match around it (padded indices)."""
        padded = scan.padded
        half = self.patch // 2
        upper = np.asarray(padded.shape) - half - 1
        points = np.clip(points_padded, half, upper)
        patches = np.stack([_crop(padded, p, self.patch) for p in points])
        out = self._run(patches, features=True)
        similarity = torch.ones((len(points), self.patch, self.patch, self.patch), device=self.device)
        for key, kernels in support.features.items():
            query = F.normalize(out[key], dim=1)  # (6, C, n, n, n)
            size = kernels.shape[-1]
            weights = kernels.to(query.dtype)  # (6, C, s, s, s): one kernel per point
            # the reference's grouped convolution, one group per point (a loop is ~8x faster on a CPU)
            sim = torch.cat(
                [F.conv3d(query[i : i + 1], weights[i : i + 1], padding=size // 2) for i in range(len(points))], dim=1
            )
            sim = sim / size**3
            similarity = (
                similarity + F.interpolate(sim, size=(self.patch,) * 3, mode="trilinear", align_corners=False)[0]
            )
        flat = similarity.reshape(len(points), -1).argmax(dim=1).cpu().numpy()
        best = np.stack(np.unravel_index(flat, (self.patch,) * 3), axis=1)
        return points + best - half + 1

    def localize(
        self, scan: PreparedScan, support: SupportSet, refine: bool = False, seed: int = RANDOM_SEED
    ) -> Localization:
        code, centre_mm = self.query_code(scan, seed)
        position_mm = DISTANCE_RATIO_MM * np.tanh(support.mean_codes - code) + centre_mm
        points = np.rint(position_mm / SPACING_MM).astype(np.int64)  # padded indices
        refined = bool(refine and support.features)
        if refined:
            points = self.refine(scan, points, support)
        points_kji = (points - scan.pad).astype(np.float64)
        low = np.array([points_kji[a, a] for a in range(3)])
        high = np.array([points_kji[3 + a, a] for a in range(3)])
        low, high = np.minimum(low, high), np.maximum(low, high)
        # [k, j, i] on the 3 mm grid -> physical -> volume (x, y, z) voxel indices
        corners_kji = np.array([[c[0], c[1], c[2]] for c in _box_corners(low, high)])
        corners_phys = scan.grid.index_to_physical(corners_kji[:, ::-1])
        corners_xyz = scan.volume_grid.physical_to_index(corners_phys)
        size = np.asarray(scan.volume_grid.size, dtype=float)
        box_low = np.clip(np.floor(corners_xyz.min(axis=0) + 1e-6), 0, size - 1)
        box_high = np.clip(np.ceil(corners_xyz.max(axis=0) - 1e-6), 0, size - 1)
        extreme_xyz = scan.volume_grid.physical_to_index(scan.grid.index_to_physical(points_kji[:, ::-1]))
        return Localization(
            tuple(float(v) for v in (*box_low, *box_high)),  # type: ignore[arg-type]
            extreme_xyz,
            points_kji,
            refined,
        )


def _box_corners(low, high):
    return [[(high if (n >> a) & 1 else low)[a] for a in range(3)] for n in range(8)]
