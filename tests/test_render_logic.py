"""Headless tests of the display logic: no window, no display needed."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.demo import make_demo_case
from medviewer.model import Box, Geometry, LabelMap, SegmentTable, Volume, VolumeInfo
from medviewer.model.segments import DEFAULT_COLORS
from medviewer.render.label_colors import build_label_colors, label_table_size, make_lookup_table
from medviewer.render.orientation import nearest_anatomical_letter, screen_orientation_letters
from medviewer.render.readout import (
    CursorSample,
    format_cursor_readout,
    format_intensity,
    format_slice_counter,
    sample_cursor,
)
from medviewer.render.slicing import vtk_friendly_dtype
from medviewer.render.window_level import WindowLevel, drag_window_level, format_window_level, minimum_width


# -- window / level -----------------------------------------------------------------------
def test_window_level_bounds_and_gray_mapping():
    window = WindowLevel(40.0, 400.0)
    assert (window.low, window.high) == (-160.0, 240.0)
    assert WindowLevel.from_range(-160.0, 240.0) == window
    np.testing.assert_allclose(window.map_to_gray([-1000, -160, 40, 240, 3000]), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_drag_right_widens_and_drag_up_raises_level():
    start = WindowLevel(40.0, 400.0)
    # Dragging across the full view width changes the window by the full intensity span.
    wider = drag_window_level(start, 500, 0, (500, 400), intensity_span=4000.0)
    assert wider == WindowLevel(40.0, 4400.0)
    higher = drag_window_level(start, 0, 100, (500, 400), intensity_span=4000.0)
    assert higher.center == pytest.approx(40.0 + 1000.0) and higher.width == 400.0
    lower = drag_window_level(start, 0, -100, (500, 400), intensity_span=4000.0)
    assert lower.center == pytest.approx(40.0 - 1000.0)


def test_drag_never_makes_the_window_degenerate():
    narrow = drag_window_level(WindowLevel(100.0, 50.0), -10_000, 0, (500, 400), intensity_span=255.0)
    assert narrow.width == pytest.approx(minimum_width(255.0)) and narrow.width > 0


def test_window_level_text():
    assert format_window_level(WindowLevel(40.0, 400.0)) == "W 400  L 40"
    assert format_window_level(WindowLevel(0.25, 0.5)) == "W 0.5  L 0.25"
    assert format_window_level(WindowLevel(-600.4, 1500.6)) == "W 1501  L -600"


# -- orientation letters ------------------------------------------------------------------
def test_identity_direction_gives_radiological_axial_letters():
    letters = screen_orientation_letters(np.eye(3))
    assert (letters.left, letters.right, letters.top, letters.bottom) == ("R", "L", "A", "P")


def test_rotated_direction_moves_the_letters():
    # Index axis i points posterior, j points to the patient's right (90 degrees about S).
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    letters = screen_orientation_letters(direction)
    assert (letters.left, letters.right, letters.top, letters.bottom) == ("A", "P", "L", "R")


def test_flipped_and_slightly_oblique_directions():
    ras_stored = np.diag([-1.0, -1.0, 1.0])  # i -> R, j -> A (as many NIfTI files)
    letters = screen_orientation_letters(ras_stored)
    assert (letters.left, letters.right, letters.top, letters.bottom) == ("L", "R", "P", "A")
    angle = np.radians(20)
    tilted = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    assert screen_orientation_letters(tilted).right == "L"  # nearest letter wins
    assert nearest_anatomical_letter((0.1, -0.2, -0.9)) == "I"
    with pytest.raises(ValueError):
        nearest_anatomical_letter((0, 0, 0))


# -- label colours ------------------------------------------------------------------------
def test_label_colors_follow_the_segment_table():
    table = SegmentTable()
    table.add("liver", (221, 130, 101), label=1)
    table.add("hidden", (0, 255, 0), label=3)
    table.update(3, visible=False)
    colors = build_label_colors(table, 256, alpha=0.5)
    assert colors.shape == (256, 4)
    assert colors[0, 3] == 0.0  # background is transparent
    np.testing.assert_allclose(colors[1], [221 / 255, 130 / 255, 101 / 255, 0.5])
    assert colors[3, 3] == 0.0  # hidden segment
    # A label without a segment entry still shows, in the colour the table would give it.
    np.testing.assert_allclose(colors[2, :3], np.asarray(DEFAULT_COLORS[1]) / 255)
    assert colors[2, 3] == 0.5


def test_lookup_table_maps_each_label_to_its_own_entry():
    table = SegmentTable()
    for label in (1, 2, 7):
        table.add(label=label)
    colors = build_label_colors(table, label_table_size(np.uint8))
    lut = make_lookup_table(colors)
    for value in (0, 1, 2, 7, 254, 255):
        rgba = [0.0] * 4
        lut.GetTableValue(value, rgba)
        np.testing.assert_allclose(rgba, np.rint(colors[value] * 255) / 255, atol=1e-6)
        index = lut.GetIndex(float(value))
        assert index == value


def test_label_table_size_per_dtype():
    assert label_table_size(np.uint8) == 256
    assert label_table_size(np.uint16) == 65536
    assert label_table_size(np.bool_) == 2
    with pytest.raises(ValueError):
        label_table_size(np.float32)


# -- cursor readout -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_demo():
    return make_demo_case(shape=(8, 48, 40), spacing=(2.0, 1.5, 3.0))


def test_sample_cursor_reports_index_position_value_and_segment(small_demo):
    volume, labels, segments = small_demo
    k, j, i = np.argwhere(labels.array == 1)[0]
    sample = sample_cursor(volume, (i, j, k), labels, segments)
    expected_lps = volume.geometry.index_to_physical((i, j, k))
    assert sample.ijk == (i, j, k)
    np.testing.assert_allclose(sample.lps_mm, expected_lps)
    assert sample.value == volume.array[k, j, i]
    assert (sample.label, sample.segment_name, sample.units) == (1, "liver", "HU")
    assert sample_cursor(volume, (-1, 0, 0)) is None
    assert sample_cursor(volume, (0, 48, 0)) is None


def test_cursor_readout_text():
    sample = CursorSample((96, 80, 48), (0.8, -24.8, 1.25), 40, "HU", 1, "liver")
    assert format_cursor_readout(sample) == "Voxel (96, 80, 48)   LPS (0.80, -24.80, 1.25) mm   40 HU   [1] liver"
    plain = CursorSample((1, 2, 3), (-1.0, 2.0, 3.5), 0.123456789)
    assert format_cursor_readout(plain) == "Voxel (1, 2, 3)   LPS (-1.00, 2.00, 3.50) mm   0.123457"
    assert format_cursor_readout(None) == ""
    assert format_intensity(np.int16(-1024), "HU") == "-1024 HU"
    assert format_intensity(12.0) == "12"
    assert format_slice_counter(48, 96) == "Slice 48 / 96"


# -- slicing ------------------------------------------------------------------------------
def test_shared_image_is_zero_copy_for_vtk_types_and_converts_once_otherwise():
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from medviewer.render.vtk_arrays import SharedImage

    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    shared = SharedImage(array, (0.5, 0.6, 2.0))
    assert shared.is_zero_copy and shared.image.GetDimensions() == (6, 5, 4)
    assert shared.image.GetSpacing() == (0.5, 0.6, 2.0)
    # x is fastest in VTK's point order: point (i, j, k) is array[k, j, i]
    assert shared.image.GetScalarComponentAsDouble(5, 3, 2, 0) == array[2, 3, 5]
    array[2, 3, 5] = -7  # an in-place edit is seen by VTK without any upload
    assert vtk_to_numpy(shared.image.GetPointData().GetScalars())[2 * 30 + 3 * 6 + 5] == -7
    assert SharedImage(np.zeros((2, 3, 4), bool), (1, 1, 1)).is_zero_copy  # bool viewed as uint8
    halves = SharedImage(np.zeros((2, 3, 4), np.float16), (1, 1, 1))
    assert not halves.is_zero_copy and halves.array.dtype == np.float32


def test_vtk_friendly_dtypes():
    assert vtk_friendly_dtype(np.int16) == np.int16
    assert vtk_friendly_dtype(np.float16) == np.float32
    assert vtk_friendly_dtype(np.bool_) == np.uint8
    assert vtk_friendly_dtype(np.dtype(">i2")) == np.dtype(np.int16)


# -- the renderer without a window ----------------------------------------------------------
def test_slice_renderer_state_without_a_window(small_demo):
    from medviewer.render.slice_renderer import SliceRenderer

    volume, labels, segments = small_demo
    labels = LabelMap(volume.geometry, labels.array.copy())
    renderer = SliceRenderer("axial")
    renderer.set_volume(volume, labels, segments)
    k = volume.shape[0] // 2
    assert renderer.slice_index == k
    np.testing.assert_array_equal(renderer.scan_slice(), volume.array[k])
    assert renderer.scan_slice().dtype == volume.dtype
    assert renderer.window == WindowLevel(40.0, 400.0)
    assert (renderer.letters.left, renderer.letters.top) == ("R", "A")
    assert renderer.edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    texts = renderer.corner_texts()
    assert texts["lower_left"].startswith(f"Slice {k} / {volume.shape[0]}")
    assert texts["lower_right"] == "W 400  L 40"

    labels.changed.connect(renderer.labels_changed)
    labels.paint(np.ones((1, 2, 2), bool), 2, offset=(k, 0, 0))
    assert renderer.label_uploads[-1] == Box((k, 0, 0), (k + 1, 2, 2))
    assert np.all(renderer.label_slice()[:2, :2] == 2)
    uploads = len(renderer.label_uploads)
    labels.paint(np.ones((1, 2, 2), bool), 2, offset=(0, 0, 0))  # another slice
    assert len(renderer.label_uploads) == uploads
    renderer.set_cursor(renderer.cursor_on_slice(0))
    assert renderer.slice_index == 0 and np.all(renderer.label_slice()[:2, :2] == 2)
    assert not renderer.set_cursor(renderer.cursor_on_slice(-5))  # clamped to 0 again: no change


def test_slice_renderer_views_agree_with_numpy_slicing(small_demo):
    from medviewer.render.slice_renderer import SliceRenderer

    volume, labels, segments = small_demo
    i, j, k = 11, 30, 5
    cursor = volume.geometry.index_to_physical((i, j, k))
    expected = {
        "axial": volume.array[k],  # rows j (A at top), columns i (R at left)
        "coronal": volume.array[::-1, j, :],  # rows: S at top
        "sagittal": volume.array[::-1, :, i],  # columns: A (j = 0) at left
    }
    for orientation, reference in expected.items():
        renderer = SliceRenderer(orientation)
        renderer.set_volume(volume, labels, segments, cursor=cursor)
        np.testing.assert_array_equal(renderer.scan_slice(), reference)
        renderer.set_outline_mode(True)  # outline changes what is drawn, not the label slice
        np.testing.assert_array_equal(renderer.label_slice(), labels.array[k] if orientation == "axial" else
                                      (labels.array[::-1, j, :] if orientation == "coronal" else labels.array[::-1, :, i]))
        assert renderer._scan.shared.is_zero_copy and renderer._labels.shared.is_zero_copy


def test_label_layer_is_cropped_to_the_labelled_part_of_the_slice():
    from medviewer.render.slice_renderer import SliceRenderer

    volume = Volume(np.zeros((4, 20, 30), np.int16), Geometry((4, 20, 30)), VolumeInfo(name="blank"))
    labels = LabelMap(volume.geometry)
    renderer = SliceRenderer("axial")
    renderer.set_volume(volume, labels, SegmentTable())
    assert renderer.label_extent is None  # nothing to draw: the layer is skipped
    labels.changed.connect(renderer.labels_changed)
    labels.paint(np.ones((1, 3, 4), bool), 1, offset=(2, 5, 7))
    assert renderer.label_extent == (7, 10, 5, 7)
    renderer.set_cursor(renderer.cursor_on_slice(0))
    assert renderer.label_extent is None


def test_slice_renderer_handles_float_volumes_and_no_labels():
    from medviewer.render.slice_renderer import SliceRenderer

    volume = Volume(np.random.default_rng(0).random((3, 4, 5)).astype(np.float16), info=VolumeInfo(name="f16"))
    renderer = SliceRenderer()
    renderer.set_volume(volume)
    assert renderer.scan_slice().dtype == np.float32
    np.testing.assert_array_equal(renderer.scan_slice(), volume.array[1].astype(np.float32))
    assert renderer.label_slice() is None and not renderer.labels_changed(Box.full(volume.shape))
    renderer.set_volume(None)
    assert not renderer.has_volume
