"""Editing tools on synthetic volumes whose answers are known in advance."""

import numpy as np
import pytest

from medviewer.model import Box, EditHistory, Geometry, LabelMap, SegmentEditor, SegmentTable, SlicePlane, Volume
from medviewer.tools.brush import BrushShape, BrushTool, brush_footprint
from medviewer.tools.interpolate import FillBetweenSlicesTool, interpolate_slices
from medviewer.tools.islands import FloodFillTool, IslandsTool
from medviewer.tools.logical import LogicalTool
from medviewer.tools.morphology import MorphologyTool
from medviewer.tools.statistics import compute_statistics
from medviewer.tools.threshold import ThresholdTool

FLIP = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # RAS-like axes: conversions must not assume identity


def make_editor(shape=(7, 40, 60), spacing=(0.5, 1.0, 3.0), direction=FLIP, values=None):
    geometry = Geometry(shape, spacing, (12.0, -7.0, 40.0), direction)
    if values is None:
        values = np.zeros(shape, np.int16)
    volume = Volume(values, geometry)
    editor = SegmentEditor(LabelMap(geometry), SegmentTable(), volume, EditHistory(1 << 26))
    editor.create_segment("liver")
    return editor


def voxel_point(editor, z, y, x):
    """LPS point of voxel (z, y, x), what a view hands the tool after a click."""
    return editor.geometry.index_to_physical([x, y, z])


def distance_mm(shape, spacing_xyz, centre_zyx):
    z, y, x = np.indices(shape)
    sx, sy, sz = spacing_xyz
    cz, cy, cx = centre_zyx
    return np.sqrt(((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2)


# -- brush -------------------------------------------------------------------------------------------
def test_circle_brush_is_round_in_millimetres_on_anisotropic_grid():
    editor = make_editor()
    brush = BrushTool(editor, radius_mm=4.0)
    brush.press(voxel_point(editor, 3, 20, 30), SlicePlane(0, 3))
    command = brush.release()
    distance = distance_mm(editor.labelmap.shape, (0.5, 1.0, 3.0), (3, 20, 30))
    expected = (distance <= 4.0) & (np.indices(editor.labelmap.shape)[0] == 3)
    np.testing.assert_array_equal(editor.labelmap.array == 1, expected)
    assert command.voxels_changed == expected.sum()
    assert command.records[0][1].details["parameters"]["radius_mm"] == 4.0


def test_sphere_brush_reaches_neighbouring_slices():
    editor = make_editor()
    brush = BrushTool(editor, radius_mm=4.0, shape=BrushShape.SPHERE)
    brush.press(voxel_point(editor, 3, 20, 30))
    brush.release()
    distance = distance_mm(editor.labelmap.shape, (0.5, 1.0, 3.0), (3, 20, 30))
    np.testing.assert_array_equal(editor.labelmap.array == 1, distance <= 4.0)
    assert set(np.unique(np.nonzero(editor.labelmap.array)[0])) == {2, 3, 4}


def test_drag_paints_a_gapless_capsule_as_one_undo_step():
    editor = make_editor()
    brush = BrushTool(editor, radius_mm=2.0)
    plane = SlicePlane(0, 1)
    brush.press(voxel_point(editor, 1, 5, 5), plane)
    brush.move(voxel_point(editor, 1, 5, 55))  # one big jump: no dab spacing gaps
    brush.move(voxel_point(editor, 1, 35, 55))
    command = brush.release()
    painted = editor.labelmap.array[1] == 1
    assert painted[5, 5:56].all() and painted[5:36, 55].all()
    assert not painted[20, 30]
    assert editor.history.undo_count == 2 and command.description == "Paint (brush)"
    editor.undo()
    assert editor.labelmap.count(1) == 0


def test_erase_brush_and_size_controls():
    editor = make_editor()
    editor.apply(np.ones(editor.labelmap.shape, bool), label=1)
    brush = BrushTool(editor, radius_mm=3.0, erase=True)
    brush.press(voxel_point(editor, 2, 20, 20), SlicePlane(0, 2))
    brush.release()
    assert editor.labelmap.array[2, 20, 20] == 0 and editor.labelmap.array[1, 20, 20] == 1
    assert brush.grow() == pytest.approx(3.6)
    assert brush.wheel(-2) == pytest.approx(3.6 / 1.44)
    brush.radius_mm = 0.0
    assert brush.radius_mm == pytest.approx(0.25)  # half the smallest voxel
    with pytest.raises(ValueError, match="SlicePlane"):
        brush.press(voxel_point(editor, 2, 20, 20))


def test_footprint_is_clipped_at_the_volume_edge():
    geometry = Geometry((3, 10, 10))
    box, mask = brush_footprint(geometry, (1, 0, 0), (1, 0, 0), 2.0, SlicePlane(0, 1))
    assert box == Box((1, 0, 0), (2, 3, 3)) and mask.sum() == 6
    assert brush_footprint(geometry, (1, -20, -20), (1, -20, -20), 1.0, SlicePlane(0, 1)) is None


def test_threshold_paint_through_the_brush():
    values = np.zeros((3, 20, 20), np.int16)
    values[:, :, 10:] = 100
    editor = make_editor((3, 20, 20), (1.0, 1.0, 1.0), values=values)
    editor.policy.intensity_range = (50, 150)
    brush = BrushTool(editor, radius_mm=6)
    brush.press(voxel_point(editor, 1, 10, 10), SlicePlane(0, 1))
    brush.release()
    painted = np.nonzero(editor.labelmap.array == 1)
    assert painted[2].min() == 10


# -- threshold ---------------------------------------------------------------------------------------
def test_threshold_preview_and_apply_replace():
    values = np.arange(4 * 10 * 10, dtype=np.int16).reshape(4, 10, 10)
    editor = make_editor((4, 10, 10), (1.0, 1.0, 1.0), values=values)
    editor.apply(np.ones((1, 10, 10), bool), Box((0, 0, 0), (1, 10, 10)), label=1)
    tool = ThresholdTool(editor)
    preview = tool.preview(150, 249, SlicePlane(0, 2))
    assert preview.box == Box((2, 0, 0), (3, 10, 10)) and preview.voxels == 50
    editor.policy.active_label = 1
    command = tool.apply(150, 249)
    np.testing.assert_array_equal(editor.labelmap.array == 1, (values >= 150) & (values <= 249))
    assert command.records[0][1].details["voxels_removed"] == 100
    low, high = tool.suggest_range()
    assert 0 < low < high


# -- islands and flood fill ---------------------------------------------------------------------------
def islands_editor():
    editor = make_editor((10, 10, 20), (1.0, 1.0, 1.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    array = editor.labelmap.array
    array[1:4, 1:4, 1:4] = 1  # 27 voxels
    array[5:7, 5:7, 5:7] = 1  # 8 voxels
    array[8, 8, 15] = 1  # 1 voxel
    editor.policy.active_label = 1
    return editor


def test_keep_largest_and_remove_small_islands():
    editor = islands_editor()
    tool = IslandsTool(editor)
    tool.remove_small(min_size_mm3=5.0)
    assert editor.labelmap.count(1) == 35
    tool.keep_largest()
    assert editor.labelmap.count(1) == 27
    editor.undo()
    editor.undo()
    assert editor.labelmap.count(1) == 36


def test_pick_and_remove_selected_island():
    editor = islands_editor()
    tool = IslandsTool(editor)
    assert tool.keep_selected(voxel_point(editor, 0, 0, 0)) is None  # clicked background
    tool.keep_selected(voxel_point(editor, 6, 6, 6))
    assert editor.labelmap.count(1) == 8
    editor.undo()
    tool.remove_selected(voxel_point(editor, 2, 2, 2))
    assert editor.labelmap.count(1) == 9


def test_flood_fill_inside_a_ring_on_one_slice_and_in_3d():
    editor = make_editor((5, 21, 21), (1.0, 1.0, 1.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    editor.create_segment("wall")  # label 2
    distance = distance_mm((5, 21, 21), (1, 1, 1), (2, 10, 10))
    shell = (distance >= 6) & (distance < 7.5)
    editor.labelmap.array[shell] = 2
    editor.policy.active_label = 1
    FloodFillTool(editor).fill(voxel_point(editor, 2, 10, 10), SlicePlane(0, 2))
    inside_slice = (distance[2] < 6)
    np.testing.assert_array_equal(editor.labelmap.array[2] == 1, inside_slice)
    assert editor.labelmap.count(1) == inside_slice.sum()
    editor.undo()
    FloodFillTool(editor).fill(voxel_point(editor, 2, 10, 10))
    np.testing.assert_array_equal(editor.labelmap.array == 1, distance < 6)


def test_flood_fill_with_intensity_tolerance():
    values = np.zeros((1, 10, 10), np.int16)
    values[0, :, 5:] = 100
    editor = make_editor((1, 10, 10), (1.0, 1.0, 1.0), values=values)
    editor.policy.active_label = 1
    FloodFillTool(editor, tolerance=10).fill(voxel_point(editor, 0, 3, 7), SlicePlane(0, 0))
    np.testing.assert_array_equal(editor.labelmap.array[0] == 1, values[0] == 100)


# -- morphology ------------------------------------------------------------------------------------
def test_fill_holes_3d_and_per_slice():
    editor = make_editor((9, 9, 9), (1.0, 1.0, 1.0))
    array = editor.labelmap.array
    array[1:8, 1:8, 1:8] = 1
    array[3:6, 3:6, 3:6] = 0  # closed cavity
    editor.policy.active_label = 1
    MorphologyTool(editor).fill_holes()
    assert editor.labelmap.count(1) == 343
    editor.undo()
    MorphologyTool(editor).fill_holes(slice_axis=0)  # each slice's hole is enclosed too
    assert editor.labelmap.count(1) == 343


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.8, 2.5)])
def test_margin_grow_and_shrink_are_exact_distances(spacing):
    shape = (15, 31, 41)
    editor = make_editor(shape, spacing)
    editor.labelmap.array[7, 15, 20] = 1
    editor.policy.active_label = 1
    MorphologyTool(editor).margin(5.0)
    distance = distance_mm(shape, spacing, (7, 15, 20))
    np.testing.assert_array_equal(editor.labelmap.array == 1, distance <= 5.0)
    MorphologyTool(editor).margin(-2.0)
    grown = distance <= 5.0
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(grown, sampling=spacing[::-1])
    np.testing.assert_array_equal(editor.labelmap.array == 1, depth > 2.0)


def test_margin_does_not_overwrite_locked_neighbour():
    editor = make_editor((5, 20, 20), (1.0, 1.0, 1.0))
    editor.create_segment("bone")
    editor.labelmap.array[:, :, 12:] = 2
    editor.set_locked(2, True)
    editor.labelmap.array[2, 10, 8] = 1
    editor.policy.active_label = 1
    MorphologyTool(editor).margin(6.0)
    assert editor.labelmap.count(2) == 5 * 20 * 8


def test_smoothing_removes_spikes_specks_and_gaps():
    editor = make_editor((12, 12, 12), (1.0, 1.0, 1.0))
    array = editor.labelmap.array
    array[3:9, 3:9, 3:9] = 1
    array[6, 6, 9] = 1  # spike
    array[0, 0, 0] = 1  # speck
    editor.policy.active_label = 1
    tool = MorphologyTool(editor)
    tool.smooth("median", kernel_mm=3.0)
    assert array[6, 6, 9] == 0 and array[0, 0, 0] == 0 and array[5, 5, 5] == 1
    editor.undo()
    tool.smooth("opening", kernel_mm=3.0)
    assert array[0, 0, 0] == 0 and array[5, 5, 5] == 1
    editor.undo()
    array[6, 3:9, 5] = 0  # a one-voxel slit
    tool.smooth("closing", kernel_mm=3.0)
    assert array[6, 4, 5] == 1


# -- logical -------------------------------------------------------------------------------------
def test_logical_operations_with_segments_and_masks():
    editor = make_editor((4, 10, 10), (1.0, 1.0, 1.0))
    editor.create_segment("spleen")
    array = editor.labelmap.array
    array[0] = 1
    array[1] = 2
    tool = LogicalTool(editor)
    tool.run("union", 2, label=1)
    assert editor.labelmap.count(1) == 200 and editor.labelmap.count(2) == 0
    editor.undo()
    mask = np.zeros(array.shape, bool)
    mask[:, :5] = True
    tool.run("subtract", mask, label=1)
    np.testing.assert_array_equal(array == 1, np.isin(np.arange(4), [0])[:, None, None] & ~mask)
    editor.undo()
    tool.run("intersect", mask, label=1)
    assert editor.labelmap.count(1) == 50 and editor.labelmap.count(2) == 100
    editor.set_locked(2, True)
    assert tool.run("union", 2, label=1) is None  # locked voxels stay


# -- fill between slices ----------------------------------------------------------------------------
def test_interpolation_of_identical_discs_fills_every_gap_slice():
    shape = (11, 30, 30)
    in_plane = np.sqrt(((np.indices(shape)[1] - 15) ** 2 + (np.indices(shape)[2] - 15) ** 2))
    mask = np.zeros(shape, bool)
    mask[0] = in_plane[0] <= 8
    mask[10] = in_plane[10] <= 8
    added = interpolate_slices(mask, 0, (2.0, 1.0, 1.0))
    for k in range(1, 10):
        np.testing.assert_array_equal(added[k], in_plane[k] <= 8)
    assert not added[0].any() and not added[10].any()


def test_interpolation_grows_between_small_and_large_discs_and_is_a_preview():
    shape = (11, 40, 40)
    editor = make_editor(shape, (1.0, 1.0, 2.0))
    yy, xx = np.indices(shape[1:])
    radius = np.sqrt((yy - 20) ** 2 + (xx - 20) ** 2)
    editor.labelmap.array[0][radius <= 4] = 1
    editor.labelmap.array[10][radius <= 14] = 1
    editor.policy.active_label = 1
    tool = FillBetweenSlicesTool(editor)
    preview = tool.preview()
    assert editor.labelmap.count(1) == (radius <= 4).sum() + (radius <= 14).sum()  # nothing written yet
    tool.accept(preview)
    area = (editor.labelmap.array[5] == 1).sum()
    assert abs(area - np.pi * 9**2) < 0.1 * np.pi * 9**2  # radius halfway between 4 and 14
    sizes = [(editor.labelmap.array[k] == 1).sum() for k in range(11)]
    assert sizes == sorted(sizes)
    editor.undo()
    assert not editor.labelmap.array[5].any()


def test_interpolation_along_another_axis_and_single_slice_returns_none():
    editor = make_editor((10, 10, 10), (1.0, 1.0, 1.0))
    editor.labelmap.array[3:6, 3:6, 2] = 1
    editor.policy.active_label = 1
    assert FillBetweenSlicesTool(editor).preview(axis=2) is None
    editor.labelmap.array[3:6, 3:6, 7] = 1
    preview = FillBetweenSlicesTool(editor).preview(axis=2)
    assert preview.box == Box((3, 3, 3), (6, 6, 7)) and preview.voxels == 9 * 4


# -- statistics ------------------------------------------------------------------------------------
def test_statistics_known_values():
    values = np.zeros((4, 5, 6), np.int16)
    values[1, 1:3, 2:5] = [[1, 2, 3], [4, 5, 6]]
    geometry = Geometry((4, 5, 6), (0.5, 2.0, 3.0), (10.0, 20.0, 30.0))
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 1:3, 2:5] = 1
    table = SegmentTable()
    table.add("liver", label=1)
    table.add("empty", label=2)
    rows = compute_statistics(labels, geometry, table, values)
    liver, empty = rows
    assert liver.voxel_count == 6 and liver.volume_mm3 == pytest.approx(18.0) and liver.volume_ml == pytest.approx(0.018)
    assert liver.mean == pytest.approx(3.5) and liver.std == pytest.approx(np.std([1, 2, 3, 4, 5, 6]))
    assert (liver.min, liver.max) == (1, 6)
    assert liver.bbox_min_ijk == (2, 1, 1) and liver.bbox_max_ijk == (4, 2, 1)
    np.testing.assert_allclose(liver.centroid_lps, geometry.index_to_physical([3, 1.5, 1]))
    assert empty.voxel_count == 0 and np.isnan(empty.mean)
