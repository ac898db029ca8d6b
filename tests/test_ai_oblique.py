"""Oblique planes for 2D prompts: the resampled image matches the volume, and a mask on the
plane lands on the voxels the plane passes through."""

from __future__ import annotations

import numpy as np

from medviewer.ai.oblique import ObliquePlane, plane_mask_to_volume, sample_plane
from medviewer.model.geometry import Geometry


def tilted_geometry() -> Geometry:
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    direction = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # tilted 20 degrees about x
    return Geometry((30, 40, 50), (1.0, 1.0, 1.5), (-25.0, -20.0, -20.0), direction.ravel())


def axial_plane(position: float) -> ObliquePlane:
    """An axial (patient z) plane at ``position`` mm sampled every 1 mm over 60 x 60 mm."""
    return ObliquePlane((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (-30.0, -30.0), (1.0, 1.0), (60, 60),
                        position, 1.5)


def test_sampling_reads_the_volume_at_each_pixels_lps_point():
    geometry = tilted_geometry()
    k, j, i = np.mgrid[0:30, 0:40, 0:50]
    array = (2.0 * i + 3.0 * j + 5.0 * k).astype(np.float32)  # linear: trilinear sampling is exact
    plane = axial_plane(1.0)
    image = sample_plane(array, geometry, plane)
    assert image.shape == (60, 60)
    for column, row in ((30, 30), (10, 45), (50, 12)):
        ijk = geometry.physical_to_index(plane.pixel_to_lps(column, row))
        if np.all(ijk >= 0) and np.all(ijk <= np.array([49, 39, 29])):
            assert abs(image[row, column] - (2 * ijk[0] + 3 * ijk[1] + 5 * ijk[2])) < 1e-3
    assert image[0, 0] == array.min()  # outside the volume
    assert np.allclose(plane.lps_to_pixel(plane.pixel_to_lps(12.0, 34.0)), (12.0, 34.0))
    assert plane.cache_index() != axial_plane(2.0).cache_index()


def test_a_plane_mask_marks_the_voxels_on_the_plane_under_its_pixels():
    geometry = tilted_geometry()
    plane = axial_plane(0.5)
    mask2d = np.zeros(plane.shape, bool)
    mask2d[25:35, 20:40] = True  # rows 25-34, columns 20-39
    mask, box = plane_mask_to_volume(mask2d, plane, geometry, geometry.shape)
    volume_mask = np.zeros(geometry.shape, bool)
    volume_mask[box.slices] = mask
    zs, ys, xs = np.nonzero(volume_mask)
    assert zs.size > 50 and len(np.unique(zs)) > 1  # the tilted volume: the plane crosses several k
    lps = geometry.index_to_physical(np.stack([xs, ys, zs], axis=1).astype(float))
    assert np.all(np.abs(lps[:, 2] - 0.5) <= 0.75 + 1e-6)  # within half a slice of the plane
    columns, rows = lps[:, 0] + 30.0, lps[:, 1] + 30.0
    assert np.all((columns > 19.4) & (columns < 39.6) & (rows > 24.4) & (rows < 34.6))
    assert plane_mask_to_volume(np.zeros(plane.shape, bool), plane, geometry, geometry.shape) is None
