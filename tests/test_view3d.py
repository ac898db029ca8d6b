"""The 3D view under Xvfb: surfaces from the label map, edits, planes, volume rendering."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QImage

from medviewer.demo import make_demo_case
from medviewer.model import Box, Geometry, LabelMap, SegmentTable, Volume
from medviewer.ui import view3d as view3d_module
from medviewer.ui.view3d import SURFACE_DEBOUNCE_MS, View3D

pytestmark = pytest.mark.gui

SURFACE_TIMEOUT_MS = 15_000


# -- helpers ------------------------------------------------------------------------------
def view_pixels(view: View3D) -> np.ndarray:
    """RGB screenshot (H, W, 3) of the VTK area, as the user sees it."""
    image = view.grab_view().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return data.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).astype(int)


def hue_fraction(pixels: np.ndarray, rgb, tolerance: float = 0.06) -> float:
    """Fraction of reasonably bright pixels whose chromaticity matches ``rgb`` (shading-proof)."""
    total = pixels.sum(axis=2, keepdims=True)
    bright = total[..., 0] > 120
    chroma = pixels / np.maximum(total, 1)
    target = np.asarray(rgb, float) / max(sum(rgb), 1)
    close = np.abs(chroma - target).max(axis=2) < tolerance
    return float(np.count_nonzero(close & bright)) / close.size


def small_demo():
    """The phantom at a quarter of the voxels: fast enough for volume rendering under Mesa."""
    return make_demo_case(shape=(48, 96, 96), spacing=(3.2, 3.2, 5.0))


@pytest.fixture
def view(qtbot):
    view = View3D()
    qtbot.addWidget(view)
    view.resize(640, 480)
    view.show()
    qtbot.waitExposed(view)
    yield view
    # Free the VTK window while Xvfb still runs (see tests/test_gui.py's fixture).
    view.shutdown()
    view.close()
    view.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del view
    gc.collect()


def show_demo(view: View3D, qtbot, case=None, planes: bool = False):
    volume, labelmap, segments = case or make_demo_case()
    view.set_slice_planes_visible(planes)
    view.set_slice_planes_textured(planes)
    view.set_volume(volume)
    with qtbot.waitSignal(view.surfaces_updated, timeout=SURFACE_TIMEOUT_MS):
        view.set_segmentation(labelmap, segments)
    assert not view.busy
    return volume, labelmap, segments


# -- tests --------------------------------------------------------------------------------
def test_demo_surfaces_render_in_segment_colours(view, qtbot):
    volume, labelmap, segments = show_demo(view, qtbot)
    assert view.surface_labels() == [1, 2, 3, 4, 5, 6]
    pixels = view_pixels(view)
    corner = pixels[5:40, -40:-5].reshape(-1, 3).mean(axis=0)
    assert corner.max() < 110 and corner[2] >= corner[0], "background should be the dark blue-grey gradient"
    assert hue_fraction(pixels, segments[1].color) > 0.05, "the liver's colour should fill part of the view"
    assert hue_fraction(pixels, segments[2].color) > 0.002, "the spleen should be visible from the front"
    # Anterior camera: looking along +y (posterior), superior up.
    camera = view.scene.renderer.GetActiveCamera()
    direction = np.subtract(camera.GetFocalPoint(), camera.GetPosition())
    assert direction[1] > 0 and abs(direction[0]) < 1e-6 and abs(direction[2]) < 1e-6
    np.testing.assert_allclose(camera.GetViewUp(), (0, 0, 1), atol=1e-6)


def shown_triangles(view: View3D) -> int:
    return sum(view.scene.surface_actor(label).GetMapper().GetInput().GetNumberOfPolys() for label in view.surface_labels())


def test_software_opengl_holds_the_surfaces_to_a_triangle_budget(view, qtbot):
    view.render_now()  # the first frame tells which OpenGL this is
    if view.triangle_budget is None:
        pytest.skip("hardware OpenGL: surfaces are shown at full resolution")
    _, labelmap, _ = show_demo(view, qtbot)
    budget = view3d_module.SOFTWARE_TRIANGLE_BUDGET
    assert view.triangle_budget == budget
    full = sum(view._full_triangles.values())
    assert full > budget  # the demo's organs have ~100k triangles at full resolution
    assert shown_triangles(view) <= 1.05 * budget
    # An edit rebuilds one organ within what is left of the budget.
    with qtbot.waitSignal(view.surfaces_updated, timeout=SURFACE_TIMEOUT_MS):
        labelmap.write(Box((20, 140, 55), (24, 150, 60)), np.asarray(3))
    assert view.last_rebuilt_labels == {3}
    assert shown_triangles(view) <= 1.05 * budget
    # With a GPU nothing is decimated.
    view._software_gl = False
    show_demo(view, qtbot)
    assert shown_triangles(view) == sum(view._full_triangles.values()) > budget


def test_painting_a_label_makes_its_surface_appear_after_the_debounce(view, qtbot):
    volume, _, _ = make_demo_case(shape=(48, 96, 96), spacing=(3.2, 3.2, 5.0))
    labelmap = LabelMap(volume.geometry)
    segments = SegmentTable()
    segments.add("lesion", (40, 200, 60), label=1)
    show_demo(view, qtbot, (volume, labelmap, segments))
    assert view.surface_labels() == []
    assert hue_fraction(view_pixels(view), (40, 200, 60)) == 0.0

    z, y, x = np.ogrid[:20, :20, :20]
    ball = (z - 9.5) ** 2 + (y - 9.5) ** 2 + (x - 9.5) ** 2 <= 81
    started = time.monotonic()
    with qtbot.waitSignal(view.surfaces_updated, timeout=SURFACE_TIMEOUT_MS):
        labelmap.paint(ball, 1, offset=(14, 38, 38))
        qtbot.wait(1)
        assert view.busy  # debouncing
    assert time.monotonic() - started >= 0.9 * SURFACE_DEBOUNCE_MS / 1000.0
    assert view.surface_labels() == [1]
    assert hue_fraction(view_pixels(view), (40, 200, 60)) > 0.01


def test_an_edit_rebuilds_only_the_labels_it_touched(view, qtbot):
    _, labelmap, segments = show_demo(view, qtbot)
    # Grow the right kidney (label 3) backwards, away from the other organs' extents:
    # only label 3 is rebuilt.
    box = Box((20, 140, 55), (24, 150, 60))
    with qtbot.waitSignal(view.surfaces_updated, timeout=SURFACE_TIMEOUT_MS):
        labelmap.write(box, np.asarray(3))
    assert view.last_rebuilt_labels == {3}
    # Erase the whole spleen (label 2): it is no longer in the box, but its old extent
    # says it was, so its surface goes. The left kidney reaches into the spleen's box
    # (present after the edit) and may be rebuilt; organs elsewhere are not.
    spleen = labelmap.array == 2
    box = Box.from_mask(spleen)
    with qtbot.waitSignal(view.surfaces_updated, timeout=SURFACE_TIMEOUT_MS):
        labelmap.write(box, np.asarray(0), where=spleen[box.slices])
    assert 2 in view.last_rebuilt_labels and view.last_rebuilt_labels <= {2, 4}
    assert 2 not in view.surface_labels()
    assert hue_fraction(view_pixels(view), segments[2].color) < 0.0005  # stray shaded pixels only


def test_burst_of_edits_gives_one_rebuild_with_the_final_state(view, qtbot):
    _, labelmap, _ = show_demo(view, qtbot, small_demo())
    updates = []
    view.surfaces_updated.connect(lambda: updates.append(time.monotonic()))
    for step in range(6):  # a brush stroke: several edits in quick succession
        labelmap.write(Box((10, 40 + 4 * step, 40), (14, 44 + 4 * step, 44)), np.asarray(7))
        qtbot.wait(40)
    qtbot.waitUntil(lambda: not view.busy, timeout=SURFACE_TIMEOUT_MS)
    assert len(updates) == 1
    assert 7 in view.surface_labels()
    actor = view.scene.surface_actor(7)
    bounds = actor.GetMapper().GetInput().GetBounds()
    geometry = labelmap.geometry
    low = geometry.index_to_physical((40, 40, 10))
    high = geometry.index_to_physical((43, 63, 13))
    assert bounds[2] < low[1] + 2 and bounds[3] > high[1] - 2, "the surface must span the whole stroke"


def test_hiding_and_recolouring_a_segment(view, qtbot):
    _, _, segments = show_demo(view, qtbot, small_demo())
    spleen = segments[2].color
    shown = hue_fraction(view_pixels(view), spleen)
    assert shown > 0.002
    segments.update(2, visible=False)
    qtbot.wait(10)
    assert hue_fraction(view_pixels(view), spleen) < shown / 10
    segments.update(2, visible=True, color=(30, 90, 230))
    qtbot.wait(10)
    pixels = view_pixels(view)
    assert hue_fraction(pixels, (30, 90, 230)) > 0.002
    assert not view.busy, "colour and visibility changes must not rebuild surfaces"


def test_volume_rendering_presets_change_the_image(view, qtbot):
    show_demo(view, qtbot, small_demo())
    presets = view.volume_rendering_presets()
    assert {"CT soft tissue", "CT bone", "MR default"} <= set(presets)
    before = view_pixels(view)
    changes = []
    view.volume_rendering_changed.connect(lambda on, name: changes.append((on, name)))
    view.set_volume_rendering(True, "CT soft tissue")
    assert changes == [(True, "CT soft tissue")]
    soft = view_pixels(view)
    assert np.abs(soft - before).mean() > 3.0
    view.set_volume_rendering(True, "CT bone")
    bone = view_pixels(view)
    assert np.abs(bone - soft).mean() > 1.0
    view.set_volume_rendering(False)
    assert np.abs(view_pixels(view) - before).mean() < 1.0
    assert changes[-1] == (False, "CT bone") and not view.volume_button.isChecked()
    view.volume_button.click()  # the header's toggle goes through the same path
    assert changes[-1] == (True, "CT bone")
    with pytest.raises(ValueError):
        view.set_volume_rendering(True, "no such preset")


def test_slice_planes_follow_the_cursor_and_window(view, qtbot):
    volume, _, _ = show_demo(view, qtbot, small_demo(), planes=True)
    centre = view.scene.cursor
    first = view_pixels(view)
    point = (centre[0] + 40.0, centre[1] + 30.0, centre[2] - 50.0)
    view.set_cursor(point)
    moved = view_pixels(view)
    assert np.abs(moved - first).mean() > 2.0
    axial = view.scene.plane_outline_points("axial")
    coronal = view.scene.plane_outline_points("coronal")
    sagittal = view.scene.plane_outline_points("sagittal")
    assert len(axial) == 4 and np.allclose(axial[:, 2], point[2])
    assert np.allclose(coronal[:, 1], point[1]) and np.allclose(sagittal[:, 0], point[0])
    view.set_window_level(40.0, 60.0)
    windowed = view_pixels(view)
    assert np.abs(windowed - moved).mean() > 1.0
    view.set_slice_planes_textured(False)  # outlines only: the organs behind show through
    outlined = view_pixels(view)
    assert np.abs(outlined - windowed).mean() > 2.0
    axial_red = (np.abs(outlined - np.array([242, 74, 51])).max(axis=2) < 40).sum()
    assert axial_red > 20, "the axial plane's red outline should be drawn"
    view.set_slice_planes_visible(False)
    assert np.abs(view_pixels(view) - outlined).mean() > 0.01
    assert len(view.scene.plane_outline_points("axial")) == 4  # kept, only hidden


def test_oblique_scan_planes_are_clipped_to_the_rotated_volume(view, qtbot):
    volume, labelmap, segments = small_demo()
    angle = np.radians(30.0)
    direction = (np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(volume.geometry.shape, volume.geometry.spacing, (10.0, -20.0, 5.0), direction)
    oblique = Volume(volume.array, geometry, volume.info)
    show_demo(view, qtbot, (oblique, LabelMap(geometry, labelmap.array), segments), planes=True)
    outline = view.scene.plane_outline_points("axial")
    assert len(outline) == 4
    ijk = geometry.physical_to_index(outline)
    size = np.asarray(geometry.size_xyz) - 1
    assert np.all(ijk >= -1e-4) and np.all(ijk <= size + 1e-4)


def test_reset_camera_after_rotating(view, qtbot):
    show_demo(view, qtbot, small_demo())
    camera = view.scene.renderer.GetActiveCamera()
    start = camera.GetPosition()
    camera.Azimuth(70)
    camera.Elevation(30)
    view.reset_camera()
    np.testing.assert_allclose(camera.GetPosition(), start, atol=1e-6)


def test_shutdown_while_a_surface_job_runs(qtbot):
    shape = (120, 256, 256)
    geometry = Geometry(shape, (0.8, 0.8, 1.5))
    labels = np.zeros(shape, np.uint8)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for label, cx in ((1, 70), (2, 180)):
        labels[((z - 60) / 50.0) ** 2 + ((y - 128) / 90.0) ** 2 + ((x - cx) / 60.0) ** 2 <= 1] = label
    labelmap = LabelMap(geometry, labels)
    view = View3D()
    view.resize(320, 240)
    view.show()
    qtbot.waitExposed(view)
    view.set_segmentation(labelmap, None)
    assert view.busy
    view.shutdown()
    view.close()
    view.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del view
    gc.collect()
    labelmap.paint(np.ones((2, 2, 2), bool), 3)  # the model no longer reaches the view
    qtbot.waitUntil(lambda: not view3d_module._JOBS_IN_FLIGHT, timeout=SURFACE_TIMEOUT_MS)
    qtbot.wait(20)


def test_a_failing_surface_job_is_reported_not_retried(view, qtbot, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("surface filter exploded")

    monkeypatch.setattr(view3d_module, "extract_label_surfaces", broken)
    volume, labelmap, segments = small_demo()
    view.set_volume(volume)
    view.set_segmentation(labelmap, segments)
    qtbot.waitUntil(lambda: not view.busy, timeout=SURFACE_TIMEOUT_MS)
    assert view.surface_labels() == []
    assert "failed" in view.status_label.text()
    assert any("surface filter exploded" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_camera_refits_on_resize_until_the_user_moves_it(view, qtbot):
    show_demo(view, qtbot, small_demo())
    camera = view.scene.renderer.GetActiveCamera()
    before = np.asarray(camera.GetPosition())
    view.resize(400, 600)  # taller and narrower: the fit moves the camera back
    qtbot.waitUntil(lambda: np.linalg.norm(np.asarray(camera.GetPosition()) - before) > 1.0, timeout=3000)
