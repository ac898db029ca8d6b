"""The circle brush paints the plane a view shows, also when that plane cuts an oblique volume.

Expectations are computed here from voxel centres in LPS millimetres (brute force over the
whole grid), independently of the tool's box and chunk arithmetic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medviewer.model import EditHistory, Geometry, LabelMap, SegmentEditor, SegmentTable, SlicePlane, Volume
from medviewer.model.provenance import prompt_to_physical
from medviewer.tools.brush import BrushShape, BrushTool, brush_footprint, plane_disc_footprint

from gui_support import isolated_settings, recovery_dir, window  # noqa: F401  (fixtures for the window test)

AXIAL_NORMAL = (0.0, 0.0, 1.0)
CORONAL_NORMAL = (0.0, 1.0, 0.0)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def make_editor(direction, shape=(18, 40, 44), spacing=(0.8, 1.1, 2.5), origin=(-20.0, -25.0, -18.0)) -> SegmentEditor:
    geometry = Geometry(shape, spacing, origin, np.asarray(direction, dtype=float).ravel())
    volume = Volume(np.zeros(shape, np.int16), geometry)
    editor = SegmentEditor(LabelMap(geometry), SegmentTable(), volume, EditHistory(1 << 26))
    editor.create_segment("lesion")
    return editor


def tilted_editor() -> SegmentEditor:
    """Tilted 30 degrees about L and 20 about S: no patient plane matches an array slice."""
    return make_editor(rotation("z", 20) @ rotation("x", 30))


def centres_lps(geometry: Geometry) -> np.ndarray:
    """LPS position of every voxel centre, shaped like the array plus a last axis of 3."""
    k, j, i = np.indices(geometry.shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    return geometry.index_to_physical(ijk).reshape(*geometry.shape, 3)


def expected_stroke(geometry: Geometry, points, radius: float, origin, normal) -> np.ndarray:
    """Voxels whose centre lies within ``radius`` (in the plane) of the polyline ``points`` and
    whose cell the plane cuts (all 8 corners are checked, not a formula)."""
    origin, normal = np.asarray(origin, float), np.asarray(normal, float) / np.linalg.norm(normal)
    centres = centres_lps(geometry)
    distance = (centres - origin) @ normal
    corner_steps = np.array([(a, b, c) for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    corner_offsets = (corner_steps * np.asarray(geometry.spacing)) @ geometry.direction_matrix.T @ normal
    cut = (distance + corner_offsets.min() <= 1e-9) & (distance + corner_offsets.max() >= -1e-9)
    projected = centres - distance[..., None] * normal
    on_plane = [np.asarray(p, float) - float((np.asarray(p, float) - origin) @ normal) * normal for p in points]
    near = np.zeros(geometry.shape, bool)
    for a, b in zip(on_plane, on_plane[1:] or on_plane):
        along = b - a
        length2 = float(along @ along)
        t = np.clip(((projected - a) @ along) / length2, 0, 1) if length2 else np.zeros(geometry.shape)
        near |= np.linalg.norm(projected - a - t[..., None] * along, axis=-1) <= radius + 1e-9
    expected = cut & near
    start = geometry.physical_to_nearest_index(on_plane[0])
    if start is not None:
        expected[start[2], start[1], start[0]] = True
    return expected


def paint(editor: SegmentEditor, points, radius: float, plane: SlicePlane, erase: bool = False):
    brush = BrushTool(editor, radius_mm=radius, erase=erase)
    brush.press(points[0], plane)
    for point in points[1:]:
        brush.move(point)
    return brush.release()


def plane_at(editor: SegmentEditor, point, normal) -> SlicePlane:
    """What the view hands the brush: the nearest array slice plus the physical plane."""
    geometry = editor.geometry
    cosines = np.abs(geometry.direction_matrix.T @ np.asarray(normal, float))
    axis = 2 - int(np.argmax(cosines))
    index = int(np.rint(geometry.physical_to_index(point)[::-1][axis]))
    return SlicePlane(axis, index, tuple(point), tuple(normal))


def old_slice_disc(geometry: Geometry, axis: int, index: int, start_zyx, end_zyx, radius: float) -> np.ndarray:
    """Yesterday's circle brush, written out: array slice ``index`` only, distances in index
    units times the spacing, plus the voxel under the start."""
    spacing = np.asarray(geometry.spacing[::-1], float)
    a, b = np.array(start_zyx, float), np.array(end_zyx, float)
    a[axis] = b[axis] = index
    grid = np.indices(geometry.shape).reshape(3, -1).T.astype(float)
    offsets, along = (grid - a) * spacing, (b - a) * spacing
    t = np.clip(offsets @ along / (along @ along), 0, 1) if along @ along else np.zeros(len(grid))
    inside = np.linalg.norm(offsets - t[:, None] * along, axis=1) <= radius + 1e-9
    inside &= grid[:, axis] == index
    expected = inside.reshape(geometry.shape)
    expected[tuple(int(np.rint(v)) for v in a)] = True
    return expected


# -- exact footprint on oblique planes ---------------------------------------------------------------
def test_dab_in_axial_view_of_tilted_volume_paints_the_shown_plane():
    editor = tilted_editor()
    geometry = editor.geometry
    point = geometry.index_to_physical((21.3, 19.6, 8.4))
    plane = plane_at(editor, point, AXIAL_NORMAL)
    assert plane.is_physical and geometry.is_oblique()

    command = paint(editor, [point], 5.0, plane)

    painted = editor.labelmap.array == 1
    expected = expected_stroke(geometry, [point], 5.0, plane.origin, plane.normal)
    np.testing.assert_array_equal(painted, expected)
    assert command.voxels_changed == expected.sum()
    # the plane cuts several array slices: the old one-slice disc could not match it
    assert len(np.unique(np.nonzero(painted)[0])) >= 3
    # every painted centre is near the plane and within the radius plus half a voxel of the click
    centres = centres_lps(geometry)[painted]
    assert np.abs((centres - point) @ np.asarray(AXIAL_NORMAL)).max() <= 0.5 * np.linalg.norm(geometry.spacing)
    in_plane = (centres - point)[:, :2]
    assert np.linalg.norm(in_plane, axis=1).max() <= 5.0 + 1e-9


def test_coronal_view_of_volume_rotated_about_s_and_axial_fast_path():
    editor = make_editor(rotation("z", 30))
    geometry = editor.geometry
    point = geometry.index_to_physical((20.2, 21.7, 9.0))
    coronal = plane_at(editor, point, CORONAL_NORMAL)
    found = brush_footprint(geometry, *(2 * [geometry.physical_to_index(point)[::-1]]), 4.0, coronal)
    assert found is not None
    box, mask = found
    painted = np.zeros(geometry.shape, bool)
    painted[box.slices] = mask
    np.testing.assert_array_equal(painted, expected_stroke(geometry, [point], 4.0, coronal.origin, coronal.normal))
    assert len(np.unique(np.nonzero(painted)[1])) >= 2  # spans array rows (y): truly oblique

    # The axial plane of this volume is an array slice: the slice path paints it, and its
    # answer is the exact rule's even when the view sits between slice centres.
    between = geometry.index_to_physical((20.2, 21.7, 9.3))
    axial = plane_at(editor, between, AXIAL_NORMAL)
    zyx = geometry.physical_to_index(between)[::-1]
    box, mask = brush_footprint(geometry, zyx, zyx, 6.0, axial)
    assert box.shape[0] == 1 and box.start[0] == 9
    painted = np.zeros(geometry.shape, bool)
    painted[box.slices] = mask
    np.testing.assert_array_equal(painted, expected_stroke(geometry, [between], 6.0, axial.origin, axial.normal))


def test_drag_along_tilted_plane_leaves_no_holes_and_one_connected_stroke():
    editor = tilted_editor()
    geometry = editor.geometry
    points = [geometry.index_to_physical(ijk) for ijk in ((8.0, 10.0, 7.0), (30.5, 14.0, 8.0), (34.0, 30.0, 9.5))]
    origin = points[0]
    normal = np.array(AXIAL_NORMAL)
    on_plane = [p - float((p - origin) @ normal) * normal for p in points]
    plane = plane_at(editor, origin, AXIAL_NORMAL)
    radius = 3.0

    paint(editor, on_plane, radius, plane)

    painted = editor.labelmap.array == 1
    np.testing.assert_array_equal(painted, expected_stroke(geometry, on_plane, radius, origin, normal))
    _, count = ndimage.label(painted, ndimage.generate_binary_structure(3, 1))
    assert count == 1
    # No holes: any plane point within (radius - half a voxel diagonal) of the path lies in a painted voxel.
    slack = radius - 0.5 * np.linalg.norm(geometry.spacing)
    rng = np.random.default_rng(3)
    for a, b in zip(on_plane, on_plane[1:]):
        t = rng.random(400)[:, None]
        angle = rng.random(400) * 2 * np.pi
        reach = np.sqrt(rng.random(400)) * slack
        samples = a + t * (b - a) + np.stack([np.cos(angle), np.sin(angle), np.zeros(400)], axis=1) * reach[:, None]
        ijk = np.rint(geometry.physical_to_index(samples)).astype(int)
        assert painted[ijk[:, 2], ijk[:, 1], ijk[:, 0]].all()


def test_wide_stroke_across_many_array_slices_is_exact():
    editor = tilted_editor()
    geometry = editor.geometry
    a, b = geometry.index_to_physical((10.0, 12.0, 8.0)), geometry.index_to_physical((30.0, 25.0, 9.0))
    plane = plane_at(editor, a, AXIAL_NORMAL)
    zyx = [geometry.physical_to_index(p)[::-1] for p in (a, b)]
    box, mask = brush_footprint(geometry, *zyx, 12.0, plane)
    painted = np.zeros(geometry.shape, bool)
    painted[box.slices] = mask
    expected = expected_stroke(geometry, [a, b], 12.0, plane.origin, plane.normal)
    np.testing.assert_array_equal(painted, expected)
    assert len(np.unique(np.nonzero(painted)[0])) >= 6


def test_undo_of_an_oblique_stroke_restores_the_exact_labels():
    editor = tilted_editor()
    other = editor.create_segment("vessel").label
    editor.labelmap.array[6:12, 15:25, 10:30] = other
    before = editor.labelmap.array.copy()
    geometry = editor.geometry
    points = [geometry.index_to_physical((12.0, 18.0, 9.0)), geometry.index_to_physical((26.0, 22.0, 9.0))]
    plane = plane_at(editor, points[0], AXIAL_NORMAL)
    editor.policy.active_label = 1
    command = paint(editor, points, 4.0, plane)
    assert command is not None and not np.array_equal(editor.labelmap.array, before)
    after = editor.labelmap.array.copy()
    assert (after != before).sum() == command.voxels_changed
    assert ((after == 1) & (before == other)).any()  # the stroke overwrote part of the other segment
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    editor.redo()
    np.testing.assert_array_equal(editor.labelmap.array, after)
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)


# -- axis-aligned volumes keep yesterday's result -----------------------------------------------------
@pytest.mark.parametrize("axis, normal", [(0, (0.0, 0.0, 1.0)), (1, (0.0, 1.0, 0.0)), (2, (1.0, 0.0, 0.0))])
def test_aligned_volume_paints_what_the_slice_brush_painted(axis, normal):
    flip = np.diag([-1.0, -1.0, 1.0])  # RAS-like axes: nothing may assume the identity
    editor = make_editor(flip, shape=(9, 30, 34), spacing=(0.6, 1.0, 2.0), origin=(10.0, 5.0, -3.0))
    geometry = editor.geometry
    start, end = np.array([4.0, 12.0, 9.0]), np.array([4.0, 18.0, 24.0])
    start[axis] = end[axis] = {0: 4, 1: 15, 2: 17}[axis]
    index = int(start[axis])
    expected = old_slice_disc(geometry, axis, index, start, end, 3.5)
    origin = geometry.index_to_physical(start[::-1])

    for plane in (SlicePlane(axis, index), SlicePlane(axis, index, tuple(origin), normal)):
        box, mask = brush_footprint(geometry, start, end, 3.5, plane)
        painted = np.zeros(geometry.shape, bool)
        painted[box.slices] = mask
        np.testing.assert_array_equal(painted, expected)
    # the exact rule itself reduces to the slice brush on an array slice
    box, mask = plane_disc_footprint(geometry, start, end, 3.5, SlicePlane(axis, index, tuple(origin), normal))
    painted = np.zeros(geometry.shape, bool)
    painted[box.slices] = mask
    np.testing.assert_array_equal(painted, expected)


def test_sphere_brush_is_a_physical_ball_on_an_oblique_volume():
    editor = tilted_editor()
    geometry = editor.geometry
    point = geometry.index_to_physical((20.4, 19.2, 8.7))
    brush = BrushTool(editor, radius_mm=4.5, shape=BrushShape.SPHERE)
    brush.press(point)
    brush.release()
    distance = np.linalg.norm(centres_lps(geometry) - point, axis=-1)
    expected = distance <= 4.5
    nearest = geometry.physical_to_nearest_index(point)
    expected[nearest[2], nearest[1], nearest[0]] = True
    np.testing.assert_array_equal(editor.labelmap.array == 1, expected)


def test_footprint_off_the_volume_is_none_and_tiny_brush_paints_the_voxel_under_the_click():
    editor = tilted_editor()
    geometry = editor.geometry
    far = geometry.index_to_physical((-40.0, -40.0, 8.0))
    plane = SlicePlane(0, 8, tuple(far), AXIAL_NORMAL)
    assert brush_footprint(geometry, *(2 * [geometry.physical_to_index(far)[::-1]]), 2.0, plane) is None
    point = geometry.index_to_physical((20.3, 20.1, 8.2))
    paint(editor, [point], 0.05, plane_at(editor, point, AXIAL_NORMAL))
    nearest = geometry.physical_to_nearest_index(point)
    assert np.flatnonzero(editor.labelmap.array == 1).tolist() == [
        np.ravel_multi_index(nearest[::-1], geometry.shape)
    ]


# -- provenance ---------------------------------------------------------------------------------------
def test_stroke_records_the_physical_plane_and_old_records_still_read():
    editor = tilted_editor()
    point = editor.geometry.index_to_physical((20.0, 20.0, 8.0))
    plane = plane_at(editor, point, AXIAL_NORMAL)
    command = paint(editor, [point], 3.0, plane)
    recorded = json.loads(json.dumps(command.records[0][1].details["parameters"]["plane"]))
    assert recorded["axis"] == "zyx"[plane.axis] and recorded["index"] == plane.index
    np.testing.assert_allclose(recorded["origin"], point, atol=1e-4)
    np.testing.assert_allclose(recorded["normal"], AXIAL_NORMAL, atol=1e-6)
    again = SlicePlane.from_dict(recorded)
    assert again.axis == plane.axis and again.index == plane.index and again.is_physical
    np.testing.assert_allclose(again.origin, plane.origin, atol=1e-4)

    old = SlicePlane.from_dict({"axis": "y", "index": 4})
    assert old == SlicePlane(1, 4) and not old.is_physical
    assert old.as_dict() == {"axis": "y", "index": 4}
    assert SlicePlane(0, 2, (0, 0, 0), (0, 0, 5.0)).normal == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="origin and its normal"):
        SlicePlane(0, 2, (0.0, 0.0, 0.0), None)
    with pytest.raises(ValueError, match="non-zero normal"):
        SlicePlane(0, 2, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))

    class Prompt:
        box = (1.0, 2.0, 5.0, 6.0)

    record = prompt_to_physical(Prompt(), editor.geometry, SlicePlane(0, 3))
    assert record["slice"] == {"axis": "z", "index": 3}


# -- the real window ----------------------------------------------------------------------------------
@pytest.mark.gui
def test_paint_drag_in_main_window_on_oblique_volume(recovery_dir, window, qtbot):
    from PySide6.QtCore import QPointF

    from gui_support import drag, settle

    window.set_layout("axial")
    shape = (24, 64, 64)
    geometry = Geometry(shape, (1.2, 1.2, 2.5), (-38.0, -40.0, -30.0), (rotation("z", 15) @ rotation("x", 25)).ravel())
    ramp = (np.indices(shape).sum(axis=0) * 10).astype(np.int16)
    window.document.add_volume(Volume(ramp, geometry))
    settle(qtbot, window)
    label = window.segment_panel.add_segment("Tumor")
    editing = window.editing
    editing.set_tool("paint")
    editing.set_brush_radius(5.0)
    view = window.axial_view
    segmentation = window.document.segmentation()
    before = segmentation.labelmap.array.copy()

    centre = view.physical_widget_pos(view.cursor)
    positions = [QPointF(centre.x() - 30 + 12 * i, centre.y() + 3 * i) for i in range(6)]
    points = [view.widget_to_physical(p) for p in positions]
    drag(view.vtk_widget, positions)
    settle(qtbot, window)

    painted = segmentation.labelmap.array == label
    normal = view.slice_renderer.plan.normal
    expected = expected_stroke(geometry, points, editing.brush.radius_mm, points[0], normal)
    np.testing.assert_array_equal(painted, expected)
    assert len(np.unique(np.nonzero(painted)[0])) >= 3  # across array slices, as the plane is
    assert segmentation.history.undo_text.startswith("Paint")

    editing.undo_action.trigger()
    np.testing.assert_array_equal(segmentation.labelmap.array, before)
