"""Surface extraction from label maps: physical placement, subsets, empties, cancellation.

Headless: VTK filters only, no window and no Qt.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from vtkmodules.vtkFiltersCore import vtkFeatureEdges

from medviewer.jobs import JobCancelled, JobControl
from medviewer.model import Box, Geometry
from medviewer.render.surfaces import (
    enclosed_volume_mm3,
    extract_label_surfaces,
    extract_surfaces,
    MIN_DISPLAY_TRIANGLES,
    fit_display_budget,
    label_extent,
    label_extents,
    labels_in_region,
    surface_points,
)


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def ellipsoid(shape, centre_zyx, radii_zyx) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    (cz, cy, cx), (rz, ry, rx) = centre_zyx, radii_zyx
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def two_blobs(shape=(40, 50, 60)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[ellipsoid(shape, (14, 20, 18), (7, 9, 11))] = 1
    labels[ellipsoid(shape, (26, 30, 42), (6, 6, 8))] = 2
    return labels


def boundary_edge_count(surface) -> int:
    edges = vtkFeatureEdges()
    edges.SetInputData(surface)
    edges.BoundaryEdgesOn()
    edges.FeatureEdgesOff()
    edges.NonManifoldEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return edges.GetOutput().GetNumberOfCells()


OBLIQUE = Geometry(
    (40, 50, 60),
    spacing=(0.8, 1.3, 2.5),
    origin=(-31.0, 12.5, 140.0),
    direction=tuple(rotation((1.0, 2.0, 0.5), 37.0).ravel()),
)
OBLIQUE_PLACEMENT = ((0.8, 1.3, 2.5), (-31.0, 12.5, 140.0), tuple(rotation((1.0, 2.0, 0.5), 37.0).ravel()))
MIRRORED = Geometry(
    (40, 50, 60),
    spacing=(1.1, 0.9, 2.0),
    origin=(5.0, -7.0, 3.0),
    direction=tuple((rotation((0.0, 0.0, 1.0), 20.0) @ np.diag([1.0, -1.0, 1.0])).ravel()),
)


@pytest.mark.parametrize("geometry", [OBLIQUE, MIRRORED], ids=["oblique", "mirrored"])
def test_surfaces_sit_on_their_voxels_in_physical_space(geometry):
    labels = two_blobs(geometry.shape)
    surfaces = extract_surfaces(labels, geometry)
    assert sorted(surfaces) == [1, 2]
    for label, surface in surfaces.items():
        voxels_ijk = np.argwhere(labels == label)[:, ::-1].astype(float)
        physical_centroid = geometry.index_to_physical(voxels_ijk.mean(axis=0))
        points = surface_points(surface)
        # Within a voxel: the largest voxel diagonal bounds any acceptable error.
        assert np.linalg.norm(points.mean(axis=0) - physical_centroid) < 0.5 * min(geometry.spacing)
        # Every point lies within one voxel of the label's index-space bounding box.
        ijk = geometry.physical_to_index(points)
        assert np.all(ijk.min(axis=0) >= voxels_ijk.min(axis=0) - 1.0 - 1e-6)
        assert np.all(ijk.max(axis=0) <= voxels_ijk.max(axis=0) + 1.0 + 1e-6)
        # Closed, outward-facing, and enclosing about the labelled volume.
        assert boundary_edge_count(surface) == 0
        voxel_volume = len(voxels_ijk) * geometry.voxel_volume_mm3
        assert enclosed_volume_mm3(surface) == pytest.approx(voxel_volume, rel=0.04)
        assert surface.GetPointData().GetNormals() is not None


def test_unsmoothed_surface_encloses_exactly_the_voxels():
    labels = two_blobs()
    surfaces = extract_surfaces(labels, OBLIQUE, [2], smoothing=False)
    expected = np.count_nonzero(labels == 2) * OBLIQUE.voxel_volume_mm3
    assert enclosed_volume_mm3(surfaces[2]) == pytest.approx(expected, rel=1e-6)


def test_label_touching_the_array_edge_still_gives_a_closed_surface():
    labels = np.zeros((10, 12, 14), dtype=np.uint8)
    labels[:4, :, :5] = 3  # touches three faces of the array
    surface = extract_surfaces(labels, Geometry(labels.shape))[3]
    assert boundary_edge_count(surface) == 0
    assert surface_points(surface)[:, 2].min() < 0.0  # closes outside the first slice


def test_subset_recomputes_only_the_requested_labels():
    labels = two_blobs()
    geometry = Geometry(labels.shape, (1.0, 1.0, 2.0))
    before = extract_surfaces(labels, geometry)
    labels[labels == 2] = 0
    labels[ellipsoid(labels.shape, (30, 35, 45), (5, 5, 5))] = 2
    only_two = extract_surfaces(labels, geometry, [2])
    assert list(only_two) == [2]
    moved = surface_points(only_two[2]).mean(axis=0) - surface_points(before[2]).mean(axis=0)
    assert np.linalg.norm(moved) > 3.0
    again_one = extract_surfaces(labels, geometry, [1])
    np.testing.assert_allclose(surface_points(again_one[1]), surface_points(before[1]))


def test_search_regions_give_the_same_surface_and_extent():
    labels = two_blobs()
    geometry = Geometry(labels.shape)
    full = extract_label_surfaces(labels, geometry, [1, 2])
    hinted = extract_label_surfaces(labels, geometry, [2], search_regions={2: Box((20, 20, 30), (35, 45, 55))})
    assert hinted.extents[2] == full.extents[2]
    np.testing.assert_allclose(surface_points(hinted.surfaces[2]), surface_points(full.surfaces[2]))


@pytest.mark.parametrize("geometry", [Geometry((60, 90, 110), (0.8, 0.8, 1.5)), Geometry((60, 90, 110), *OBLIQUE_PLACEMENT)])
def test_display_budget_shares_triangles_by_size_and_keeps_surfaces_closed(geometry):
    labels = np.zeros((60, 90, 110), dtype=np.uint8)
    labels[ellipsoid(labels.shape, (28, 40, 40), (22, 32, 34))] = 1
    labels[ellipsoid(labels.shape, (30, 50, 90), (14, 16, 15))] = 2
    found = extract_label_surfaces(labels, geometry)
    full = found.surfaces
    counts = {label: surface.GetNumberOfPolys() for label, surface in full.items()}
    budget = sum(counts.values()) // 6
    fitted = fit_display_budget(found, labels, geometry, budget)
    for label, surface in fitted.items():
        share = budget * counts[label] / sum(counts.values())
        assert surface.GetNumberOfPolys() <= 1.2 * share
        assert boundary_edge_count(surface) == 0  # closed: no holes to see through
        assert surface.GetPointData().GetNormals() is not None  # smooth shading still works
        # Same place and size as the full surface, to within a voxel or two.
        assert enclosed_volume_mm3(surface) == pytest.approx(enclosed_volume_mm3(full[label]), rel=0.04)
        shift = surface_points(surface).mean(axis=0) - surface_points(full[label]).mean(axis=0)
        assert np.linalg.norm(shift) < 0.5 * max(geometry.spacing)
    # The surfaces handed in are left as they were (exports use the full ones).
    assert {label: surface.GetNumberOfPolys() for label, surface in full.items()} == counts
    # Triangles already on screen count against the budget; a surface within its share is kept.
    alone = extract_label_surfaces(labels, geometry, [2])
    crowded = fit_display_budget(alone, labels, geometry, budget, other_triangles={1: 10 * budget})
    assert crowded[2].GetNumberOfPolys() < counts[2]
    assert fit_display_budget(alone, labels, geometry, 10 * budget)[2] is alone.surfaces[2]
    # A structure thinner than the coarse grid's blocks keeps its full surface, never a broken one.
    thin = np.zeros((60, 90, 110), dtype=np.uint8)
    thin[5:55, 44:46, 10:100] = 3  # a 2-voxel sheet
    sheet = extract_label_surfaces(thin, geometry)
    kept = fit_display_budget(sheet, thin, geometry, MIN_DISPLAY_TRIANGLES)
    assert sheet.surfaces[3].GetNumberOfPolys() > MIN_DISPLAY_TRIANGLES and kept[3] is sheet.surfaces[3]


def test_empty_labels_give_no_surface():
    labels = two_blobs()
    geometry = Geometry(labels.shape)
    result = extract_label_surfaces(labels, geometry, [2, 5, 0])
    assert sorted(result.surfaces) == [2] and sorted(result.extents) == [2]
    assert extract_surfaces(np.zeros((6, 7, 8), np.uint8), Geometry((6, 7, 8))) == {}
    with pytest.raises(ValueError):
        extract_surfaces(labels, Geometry((1, 2, 3)))


def test_label_extents_match_scipy_and_work_in_slabs(monkeypatch):
    import medviewer.render.surfaces as surfaces_module

    labels = np.zeros((30, 40, 50), dtype=np.uint16)
    labels[2:9, 5:20, 7:9] = 300
    labels[25:30, 0:3, 40:50] = 4
    labels[10, 10, 10] = 4
    monkeypatch.setattr(surfaces_module, "_EXTENT_CHUNK_VOXELS", 2_000)  # force many slabs
    extents = label_extents(labels)
    for label, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is not None:
            assert extents[label].slices == found
    assert set(extents) == {4, 300}
    assert labels_in_region(labels, Box((0, 0, 0), (11, 21, 11))) == {4, 300}
    assert labels_in_region(labels, Box((11, 0, 0), (20, 40, 50))) == set()
    assert label_extent(labels, 4, Box((0, 0, 0), (12, 12, 12))) == Box((10, 10, 10), (11, 11, 11))


def test_cancelled_extraction_stops():
    control = JobControl()
    control.cancel()
    with pytest.raises(JobCancelled):
        extract_surfaces(two_blobs(), Geometry((40, 50, 60)), control=control)


def test_progress_is_reported_per_label():
    reports = []
    control = JobControl(lambda done, total, message: reports.append((done, total)))
    extract_surfaces(two_blobs(), Geometry((40, 50, 60)), control=control)
    assert reports[-1] == (2, 2) and (0, 2) in reports
