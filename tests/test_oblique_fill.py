"""Flood fill and threshold preview on the plane a view shows, also when it cuts an oblique
volume; and the editor's voxel-by-voxel paths for strokes and sparse masks (policy, undo and
cancel stay exact).

Expectations are brute force over every voxel centre in LPS millimetres (all 8 cell corners
decide whether the plane cuts a voxel), or a plain 2D ``ndimage.label`` on an array slice:
independent of the tools' column walk and neighbour graph.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medviewer.model import Box, EditHistory, EditMode, Geometry, LabelMap, SegmentEditor, SegmentTable, SlicePlane, Volume
from medviewer.tools.base import plane_slab_voxels
from medviewer.tools.islands import FloodFillTool, connected_voxels, flood_region
from medviewer.tools.threshold import ThresholdTool

from gui_support import isolated_settings, recovery_dir, window  # noqa: F401  (fixtures for the window test)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


TILTED = rotation("z", 20) @ rotation("x", 30)  # no patient plane matches an array slice


def make_editor(direction=TILTED, shape=(16, 34, 38), spacing=(0.8, 1.1, 2.5), values=None) -> SegmentEditor:
    geometry = Geometry(shape, spacing, (-20.0, -25.0, -18.0), np.asarray(direction, dtype=float).ravel())
    volume = Volume(np.zeros(shape, np.int16) if values is None else values, geometry)
    editor = SegmentEditor(LabelMap(geometry), SegmentTable(), volume, EditHistory(1 << 26))
    editor.create_segment("lesion")  # label 1
    return editor


def centres_lps(geometry: Geometry) -> np.ndarray:
    k, j, i = np.indices(geometry.shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    return geometry.index_to_physical(ijk).reshape(*geometry.shape, 3)


def signed_distance(geometry: Geometry, origin, normal) -> np.ndarray:
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    return (centres_lps(geometry) - np.asarray(origin, float)) @ normal


def cells_cut(geometry: Geometry, origin, normal) -> np.ndarray:
    """Voxels whose cell the plane cuts: its corners lie on both sides (or on it)."""
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    distance = signed_distance(geometry, origin, normal)
    corners = np.array([(a, b, c) for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    offsets = (corners * np.asarray(geometry.spacing)) @ geometry.direction_matrix.T @ normal
    return (distance + offsets.min() <= 1e-9) & (distance + offsets.max() >= -1e-9)


def plane_at(editor: SegmentEditor, point, normal) -> SlicePlane:
    """What the view hands a pick tool: the nearest array slice plus the physical plane."""
    geometry = editor.geometry
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    axis = 2 - int(np.argmax(np.abs(geometry.direction_matrix.T @ normal)))
    index = int(np.clip(np.rint(geometry.physical_to_index(point)[::-1][axis]), 0, geometry.shape[axis] - 1))
    return SlicePlane(axis, index, tuple(float(v) for v in point), tuple(normal))


def as_full(editor: SegmentEditor, found) -> np.ndarray:
    full = np.zeros(editor.labelmap.shape, bool)
    if found is not None:
        box, mask = found
        full[box.slices] = mask
    return full


NORMALS = [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.3, -0.5, 0.8)]


# -- the voxels a plane cuts ----------------------------------------------------------------------------
@pytest.mark.parametrize("normal", NORMALS)
def test_slab_is_exactly_the_cells_the_plane_cuts(normal):
    editor = make_editor()
    geometry = editor.geometry
    point = geometry.index_to_physical((19.3, 16.6, 7.4))
    plane = plane_at(editor, point, normal)
    slab = plane_slab_voxels(geometry, plane)
    assert np.all(np.diff(slab) > 0)  # sorted and unique
    found = np.zeros(geometry.shape, bool)
    found.reshape(-1)[slab] = True
    np.testing.assert_array_equal(found, cells_cut(geometry, plane.origin, plane.normal))


def test_slab_of_a_plane_that_misses_the_volume_is_empty():
    editor = make_editor()
    far = editor.geometry.index_to_physical((19.0, 16.0, 400.0))
    plane = plane_at(editor, far, (0.0, 0.0, 1.0))
    assert plane_slab_voxels(editor.geometry, plane).size == 0


# -- flood fill on an oblique plane ----------------------------------------------------------------
@pytest.mark.parametrize("normal", NORMALS[:2] + NORMALS[3:])
def test_fill_of_an_empty_plane_covers_every_voxel_it_cuts(normal):
    editor = make_editor()
    point = editor.geometry.index_to_physical((19.3, 16.6, 7.4))
    plane = plane_at(editor, point, normal)
    command = FloodFillTool(editor).fill(point, plane)
    expected = cells_cut(editor.geometry, plane.origin, plane.normal)
    np.testing.assert_array_equal(editor.labelmap.array == 1, expected)
    assert command.voxels_changed == expected.sum()
    assert len(np.unique(np.nonzero(expected)[0])) > 3  # the plane really crosses array slices
    recorded = command.records[0][1].details["parameters"]["plane"]
    assert recorded["normal"] == pytest.approx(plane.normal, abs=1e-6)
    editor.undo()
    assert not editor.labelmap.array.any()


@pytest.mark.parametrize("connectivity", [1, 3])
def test_fill_stops_at_a_wall_that_crosses_the_plane(connectivity):
    editor = make_editor()
    geometry = editor.geometry
    wall_label = editor.create_segment("wall").label
    centre = geometry.index_to_physical((19.0, 17.0, 7.5))
    wall_normal = (1.0, 0.0, 0.0)  # a sagittal wall through the axial view plane
    wall = cells_cut(geometry, centre, wall_normal)  # a cut layer has no tunnels, even diagonally
    editor.labelmap.array[wall] = wall_label
    before = editor.labelmap.array.copy()
    editor.policy.active_label = 1
    click = centre + np.array([6.0, 2.0, 0.0])  # on the +L side of the wall
    plane = plane_at(editor, click, (0.0, 0.0, 1.0))

    FloodFillTool(editor, connectivity=connectivity).fill(click, plane)
    side = signed_distance(geometry, centre, wall_normal) > 0
    expected = cells_cut(geometry, plane.origin, plane.normal) & ~wall & side
    np.testing.assert_array_equal(editor.labelmap.array == 1, expected)
    np.testing.assert_array_equal(editor.labelmap.array == wall_label, wall)  # the wall is untouched
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)


def test_fill_with_tolerance_takes_the_disc_a_ball_shows_on_the_plane():
    editor = make_editor()
    geometry = editor.geometry
    centre = geometry.index_to_physical((19.0, 17.0, 7.5))
    ball = np.linalg.norm(centres_lps(geometry) - centre, axis=-1) <= 9.0
    editor.volume.array[ball] = 100
    editor.volume.array[~ball] = 10 * (np.arange(int((~ball).sum())) % 5)  # background too far off
    click = centre + np.array([1.0, -2.0, 0.5])
    plane = plane_at(editor, click, (0.2, 0.1, 1.0))
    FloodFillTool(editor, tolerance=20).fill(click, plane)
    expected = cells_cut(geometry, plane.origin, plane.normal) & ball
    np.testing.assert_array_equal(editor.labelmap.array == 1, expected)


def test_click_is_projected_onto_the_shown_plane_and_off_grid_clicks_do_nothing():
    editor = make_editor()
    geometry = editor.geometry
    point = geometry.index_to_physical((19.3, 16.6, 7.4))
    plane = plane_at(editor, point, (0.0, 0.0, 1.0))
    lifted = np.asarray(point) + 40.0 * np.asarray(plane.normal)  # far off the plane, same view ray
    FloodFillTool(editor).fill(lifted, plane)
    np.testing.assert_array_equal(editor.labelmap.array == 1, cells_cut(geometry, plane.origin, plane.normal))
    editor.undo()
    assert FloodFillTool(editor).fill(np.asarray(point) + np.array([500.0, 0.0, 0.0]), plane) is None
    assert not editor.labelmap.array.any()


def test_flood_region_needs_geometry_for_a_physical_plane():
    editor = make_editor()
    point = editor.geometry.index_to_physical((19.0, 16.0, 7.0))
    plane = plane_at(editor, point, (0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="geometry"):
        flood_region(editor.labelmap.array, (7, 16, 19), plane=plane)


# -- axis-aligned planes keep the 2D slice fill -----------------------------------------------------
@pytest.mark.parametrize("axis, normal", [(0, (0.0, 0.0, 1.0)), (1, (0.0, 1.0, 0.0)), (2, (1.0, 0.0, 0.0))])
def test_aligned_fill_is_the_2d_fill_of_the_array_slice(axis, normal):
    flip = np.diag([-1.0, -1.0, 1.0])
    editor = make_editor(flip, shape=(9, 24, 26), spacing=(0.6, 1.0, 2.0))
    rng = np.random.default_rng(axis)
    editor.labelmap.array[...] = rng.random(editor.labelmap.shape) < 0.3  # label 1 speckle
    editor.create_segment("other")  # label 2 is what the fill paints
    editor.policy.active_label = 2
    seed = [4, 12, 13]
    editor.labelmap.array[tuple(seed)] = 0
    before = editor.labelmap.array.copy()
    flat = np.take(before, seed[axis], axis=axis)
    components, _ = ndimage.label(flat == 0)
    seed2d = tuple(v for a, v in enumerate(seed) if a != axis)
    expected = np.zeros(before.shape, bool)
    index = [slice(None)] * 3
    index[axis] = seed[axis]
    expected[tuple(index)] = components == components[seed2d]

    point = editor.geometry.index_to_physical(np.asarray(seed, float)[::-1])
    for plane in (SlicePlane(axis, seed[axis]), SlicePlane(axis, seed[axis], tuple(point), normal)):
        command = FloodFillTool(editor).fill(point, plane)
        np.testing.assert_array_equal(editor.labelmap.array == 2, expected)
        assert command.voxels_changed == expected.sum()
        editor.undo()
        np.testing.assert_array_equal(editor.labelmap.array, before)


# -- the neighbour graph agrees with ndimage ------------------------------------------------------------
@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_connected_voxels_matches_ndimage_label(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = rng.random((7, 9, 11)) < 0.35
    nodes = np.flatnonzero(mask)
    components, _ = ndimage.label(mask, ndimage.generate_binary_structure(3, connectivity))
    for seed in nodes[:: max(1, nodes.size // 12)]:
        expected = np.flatnonzero(components.reshape(-1) == components.reshape(-1)[seed])
        np.testing.assert_array_equal(connected_voxels(nodes, int(seed), mask.shape, connectivity), expected)


# -- threshold preview on an oblique plane ----------------------------------------------------------------
def test_threshold_preview_on_an_oblique_plane_shows_the_cut_voxels_in_range():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 400, size=(16, 34, 38)).astype(np.int16)
    editor = make_editor(values=values)
    point = editor.geometry.index_to_physical((19.3, 16.6, 7.4))
    plane = plane_at(editor, point, (0.0, 1.0, 0.0))
    preview = ThresholdTool(editor).preview(100, 250, plane)
    expected = cells_cut(editor.geometry, plane.origin, plane.normal) & (values >= 100) & (values <= 250)
    np.testing.assert_array_equal(as_full(editor, (preview.box, preview.mask)), expected)
    assert preview.parameters["plane"]["normal"] == pytest.approx(plane.normal, abs=1e-6)
    assert ThresholdTool(editor).preview(1000, 2000, plane).voxels == 0


# -- sparse stroke path -----------------------------------------------------------------------------------
def test_stroke_obeys_the_policy_voxel_by_voxel_and_undo_and_cancel_are_exact():
    rng = np.random.default_rng(11)
    values = rng.integers(0, 200, size=(12, 20, 22)).astype(np.int16)
    editor = make_editor(np.eye(3), shape=(12, 20, 22), values=values)
    locked = editor.create_segment("bone").label
    hidden = editor.create_segment("vessel").label
    editor.labelmap.array[...] = rng.choice([0, 0, 1, locked, hidden], size=values.shape)
    editor.set_locked(locked, True)
    editor.set_visible(hidden, False)
    editor.policy.active_label = 1
    editor.policy.mode = EditMode.VISIBLE_ONLY
    editor.policy.intensity_range = (40.0, 160.0)
    before = editor.labelmap.array.copy()
    seen = []
    editor.labelmap.changed.connect(seen.append)

    boxes = [Box((1, 2, 3), (9, 15, 20)), Box((4, 0, 0), (12, 20, 10))]
    masks = [rng.random(box.shape) < 0.2 for box in boxes]
    editor.begin_stroke()
    expected = before.copy()
    for box, mask in zip(boxes, masks):
        region = expected[box.slices]
        allowed = (region != 1) & (region != locked) & (region != hidden)
        allowed &= (values[box.slices] >= 40) & (values[box.slices] <= 160)
        changed = editor.stroke_apply(mask, box)
        assert changed == int((mask & allowed).sum())
        region[mask & allowed] = 1
        np.testing.assert_array_equal(editor.labelmap.array, expected)
        touched = as_full(editor, (box, mask & allowed))
        notified = as_full(editor, (seen[-1], np.ones(seen[-1].shape, bool)))
        assert not (touched & ~notified).any()  # the announced box covers every change
    command = editor.end_stroke()
    assert command.voxels_changed == int((expected != before).sum())
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    editor.redo()
    np.testing.assert_array_equal(editor.labelmap.array, expected)
    editor.undo()

    editor.begin_stroke()
    for box, mask in zip(boxes, masks):
        editor.stroke_apply(mask, box)
    editor.cancel_stroke()
    np.testing.assert_array_equal(editor.labelmap.array, before)


# -- the real window ----------------------------------------------------------------------------------
@pytest.mark.gui
def test_flood_fill_click_in_main_window_fills_the_oblique_plane_shown(recovery_dir, window, qtbot):
    from PySide6.QtCore import QEvent, QPointF, Qt

    from gui_support import send_mouse, settle

    window.set_layout("axial")
    shape = (20, 48, 48)
    geometry = Geometry(shape, (1.2, 1.2, 2.5), (-28.0, -30.0, -25.0), (rotation("z", 15) @ rotation("x", 25)).ravel())
    window.document.add_volume(Volume(np.zeros(shape, np.int16), geometry))
    settle(qtbot, window)
    label = window.segment_panel.add_segment("Tumor")
    editing = window.editing
    editing.set_tool("flood fill")
    editing.panel.flood_tolerance.setValue(0.0)
    editing.panel.flood_in_slice.setChecked(True)
    view = window.axial_view
    segmentation = window.document.segmentation()

    position = QPointF(view.physical_widget_pos(view.cursor))
    point = view.widget_to_physical(position)
    left = Qt.MouseButton.LeftButton
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonPress, position, left, left)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonRelease, position, left)
    settle(qtbot, window)

    filled = segmentation.labelmap.array == label
    expected = cells_cut(geometry, point, view.slice_renderer.plan.normal)
    np.testing.assert_array_equal(filled, expected)
    assert len(np.unique(np.nonzero(filled)[0])) >= 3  # across array slices, as the plane is
    editing.undo_action.trigger()
    assert not segmentation.labelmap.array.any()


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("erase", [False, True])
def test_apply_gives_the_same_edit_voxel_by_voxel_or_over_the_box(monkeypatch, sparse, erase):
    import medviewer.model.editing as editing

    monkeypatch.setattr(editing, "_SPARSE_FRACTION", 0 if sparse else 10**12)  # force one path
    rng = np.random.default_rng(3)
    values = rng.integers(0, 200, size=(10, 18, 20)).astype(np.int16)
    editor = make_editor(np.eye(3), shape=(10, 18, 20), values=values)
    locked = editor.create_segment("bone").label
    other = editor.create_segment("vessel").label
    editor.labelmap.array[...] = rng.choice([0, 1, 1, locked, other], size=values.shape)
    editor.set_locked(locked, True)
    editor.policy.active_label = 1
    editor.policy.mode = EditMode.EMPTY_ONLY if not erase else EditMode.EVERYWHERE
    editor.policy.intensity_range = (30.0, 170.0)
    before = editor.labelmap.array.copy()
    box = Box((2, 3, 1), (9, 16, 19))
    mask = rng.random(box.shape) < 0.1

    command = editor.apply(mask, box, erase=erase)
    region = before[box.slices]
    allowed = (region == 1) if erase else (region == 0)
    allowed &= (values[box.slices] >= 30) & (values[box.slices] <= 170)
    expected = before.copy()
    expected[box.slices][mask & allowed] = 0 if erase else 1
    np.testing.assert_array_equal(editor.labelmap.array, expected)
    details = command.records[0][1].details
    assert command.voxels_changed == int((mask & allowed).sum())
    assert details["voxels_removed" if erase else "voxels_added"] == command.voxels_changed
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    editor.redo()
    np.testing.assert_array_equal(editor.labelmap.array, expected)
    assert editor.apply(np.zeros(box.shape, bool), box, erase=erase) is None
