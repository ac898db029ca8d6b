"""Headless pieces of the 3D view: volume-rendering presets, zero-copy images, plane outlines."""

from __future__ import annotations

import numpy as np
import pytest
from vtkmodules.vtkRenderingCore import vtkVolumeProperty

from medviewer.model import Geometry, Volume, VolumeInfo
from medviewer.render.scene3d import grid_bounds, plane_outline
from medviewer.render.volume_rendering import (
    VOLUME_RENDERING_PRESETS,
    apply_preset,
    default_preset_name,
    grid_to_world_matrix,
    image_data_from_volume,
    preset_names,
)

OBLIQUE = Geometry(
    (6, 7, 8),
    spacing=(0.5, 0.75, 2.0),
    origin=(10.0, -4.0, 30.0),
    direction=(0.0, -1.0, 0.0, np.cos(0.3), 0.0, -np.sin(0.3), np.sin(0.3), 0.0, np.cos(0.3)),
)


def test_presets_and_their_default_per_modality():
    assert {"CT soft tissue", "CT bone", "MR default"} <= set(preset_names())
    ct = Volume(np.zeros((2, 3, 4), np.int16), info=VolumeInfo(modality="CT"))
    mr = Volume(np.zeros((2, 3, 4), np.uint16), info=VolumeInfo(modality="MR"))
    assert default_preset_name(ct) == "CT soft tissue"
    assert default_preset_name(mr) == "MR default"
    for preset in VOLUME_RENDERING_PRESETS.values():
        values = [p[0] for p in preset.opacity_points]
        assert values == sorted(values) and all(0.0 <= p[1] <= 1.0 for p in preset.opacity_points)


def test_mr_preset_is_placed_on_the_volume_percentiles():
    rng = np.random.default_rng(1)
    mr = Volume(rng.integers(100, 1100, (10, 20, 20)).astype(np.uint16), info=VolumeInfo(modality="MR"))
    low, high = mr.percentiles(1.0, 99.0)
    colors, opacities = VOLUME_RENDERING_PRESETS["MR default"].placed_on(mr)
    assert opacities[0][0] == pytest.approx(low) and opacities[-1][0] == pytest.approx(high)
    prop = vtkVolumeProperty()
    apply_preset(prop, VOLUME_RENDERING_PRESETS["MR default"], mr)
    assert prop.GetScalarOpacity().GetRange() == pytest.approx((low, high))


def test_image_data_shares_the_voxels_and_carries_the_grid():
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    volume = Volume(array, OBLIQUE)
    image, voxels = image_data_from_volume(volume)
    assert voxels is array  # C-contiguous int16: no copy
    assert image.GetDimensions() == (8, 7, 6)
    array[2, 3, 4] = -1234
    assert image.GetScalarComponentAsDouble(4, 3, 2, 0) == -1234
    physical = [0.0, 0.0, 0.0]
    image.TransformContinuousIndexToPhysicalPoint(4, 3, 2, physical)
    np.testing.assert_allclose(physical, OBLIQUE.index_to_physical((4, 3, 2)))
    # The un-oriented variant plus the prop matrix lands on the same point.
    flat, _ = image_data_from_volume(volume, voxels, oriented=False)
    matrix = grid_to_world_matrix(OBLIQUE)
    local = [4 * 0.5, 3 * 0.75, 2 * 2.0, 1.0]
    np.testing.assert_allclose(matrix.MultiplyPoint(local)[:3], OBLIQUE.index_to_physical((4, 3, 2)))
    assert flat.GetOrigin() == (0.0, 0.0, 0.0)


def test_plane_outlines_stay_inside_an_oblique_grid():
    low = np.asarray(grid_bounds(OBLIQUE)[::2])
    high = np.asarray(grid_bounds(OBLIQUE)[1::2])
    centre = (low + high) / 2
    for normal in ((0, 0, 1), (0, 1, 0), (1, 0, 0)):
        polygon = plane_outline(OBLIQUE, centre, normal)
        assert len(polygon) >= 3
        assert np.allclose((polygon - centre) @ np.asarray(normal, float), 0.0)
        ijk = OBLIQUE.physical_to_index(polygon)
        assert np.all(ijk > -1e-6) and np.all(ijk < np.asarray(OBLIQUE.size_xyz) - 1 + 1e-6)
    assert len(plane_outline(OBLIQUE, high + 5.0, (0, 0, 1))) == 0  # above the volume: no plane
