"""The linked MPR viewer on the real main window under Xvfb (pixels checked on screen grabs)."""

from __future__ import annotations


import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QLabel

from medviewer.model import Box, Document, Geometry, Volume, VolumeInfo
from medviewer.ui.main_window import MainWindow

from gui_support import demo_window, isolated_settings, keep_view_sizes_fixed, send_mouse, settle, window  # noqa: F401  (fixtures)
from gui_support import view_pixels as pixels_of

pytestmark = pytest.mark.gui


# -- helpers ------------------------------------------------------------------------------
def drag(widget, button, start: QPoint, end: QPoint, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, button, button, modifiers)
    for t in (0.25, 0.5, 0.75, 1.0):
        send_mouse(widget, QEvent.Type.MouseMove, QPointF(start) + (QPointF(end) - QPointF(start)) * t, Qt.MouseButton.NoButton, button, modifiers)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, modifiers)


def wheel(widget, steps: int, modifiers=Qt.KeyboardModifier.NoModifier, pos: QPointF | None = None) -> None:
    pos = pos or QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def bright_blobs(pixels: np.ndarray, threshold: int = 170) -> list[tuple[float, float, int, int]]:
    """(x, y, width, height) of each white blob (all channels bright), largest first."""
    from skimage.measure import label, regionprops

    mask = np.all(pixels > threshold, axis=2)
    blobs = []
    for region in regionprops(label(mask)):
        if region.area < 150:  # skip text glyphs
            continue
        r0, c0, r1, c1 = region.bbox
        y, x = region.centroid
        blobs.append((x, y, c1 - c0, r1 - r0, region.area))
    blobs.sort(key=lambda b: -b[4])
    return [b[:4] for b in blobs]


def region_mean(pixels: np.ndarray, pos: QPointF, radius: int = 2) -> np.ndarray:
    x, y = round(pos.x()), round(pos.y())
    return pixels[y - radius : y + radius + 1, x - radius : x + radius + 1].reshape(-1, 3).mean(axis=0)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def oblique_marker_volume():
    """An oblique, anisotropic volume with white spheres at known LPS points.

    ``centre`` has neighbours 25 mm to the patient's left, 22 mm anterior and 22 mm
    superior, so every view can be checked for position and orientation.
    """
    geometry = Geometry((56, 96, 96), (1.0, 0.8, 2.2), (-35.0, -20.0, -40.0), (rotation("x", 15) @ rotation("z", -10)).ravel())
    nz, ny, nx = geometry.shape
    k, j, i = np.mgrid[0:nz, 0:ny, 0:nx]
    points = geometry.index_to_physical(np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float))
    centre = geometry.index_to_physical(((nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2))
    markers = {
        "centre": centre,
        "left": centre + (25.0, 0.0, 0.0),
        "anterior": centre + (0.0, -22.0, 0.0),
        "superior": centre + (0.0, 0.0, 22.0),
    }
    array = np.zeros(len(points), np.int16)
    for point in markers.values():
        index = geometry.physical_to_index(point)
        assert np.all((index > (10, 12, 5)) & (index < np.array([nx, ny, nz]) - (10, 12, 5)))
        array[np.linalg.norm(points - point, axis=1) <= 8.0] = 1000
    volume = Volume(array.reshape(geometry.shape), geometry, VolumeInfo(name="oblique markers", modality="MR"))
    return volume, markers


# -- linked cursor on an oblique volume ----------------------------------------------------
def test_click_puts_the_same_physical_point_under_the_crosshair_in_all_views(window, qtbot):
    volume, markers = oblique_marker_volume()
    assert volume.geometry.is_oblique()
    window.document.add_volume(volume)
    window.set_window_level(500.0, 1000.0)
    window.crosshair_action.trigger()  # hide the lines while blobs are measured
    assert not window.crosshair_action.isChecked()
    centre = markers["centre"]
    window.set_cursor(centre + (12.0, 9.0, 0.0))  # the axial plane through the markers
    settle(qtbot, window)

    axial = window.axial_view
    blobs = bright_blobs(pixels_of(axial))
    assert len(blobs) == 3, blobs  # centre, left and anterior lie in this axial plane
    # Radiological axial: the patient's left is on the screen's right, anterior on top.
    by_x = sorted(blobs, key=lambda b: b[0])
    by_y = sorted(blobs, key=lambda b: b[1])
    left_blob, anterior_blob = by_x[-1], by_y[0]
    centre_blob = next(b for b in blobs if b is not left_blob and b is not anterior_blob)
    assert abs(left_blob[1] - centre_blob[1]) < 4 and left_blob[0] > centre_blob[0] + 40
    assert abs(anterior_blob[0] - centre_blob[0]) < 4 and anterior_blob[1] < centre_blob[1] - 40
    for blob in blobs:  # spheres stay round: anisotropic spacing and obliquity are undone
        assert abs(blob[2] - blob[3]) <= 0.2 * max(blob[2], blob[3]), blob

    click = QPoint(round(centre_blob[0]), round(centre_blob[1]))
    with qtbot.waitSignal(window.cursor_changed, timeout=2000):
        qtbot.mouseClick(axial.vtk_widget, Qt.MouseButton.LeftButton, pos=click)
    cursor = window.cursor_point
    assert np.linalg.norm(cursor - centre) < 1.5, (cursor, centre)
    np.testing.assert_allclose(axial.widget_to_physical(click), cursor, atol=1e-6)
    settle(qtbot, window)

    expectations = {  # view: (neighbour on the screen's right or left, neighbour above)
        "coronal": ("left", +1, "superior"),
        "sagittal": ("anterior", -1, "superior"),
    }
    for name, (side_marker, side, above_marker) in expectations.items():
        view = window.slice_views[name]
        # the plane of every view passes through the cursor ...
        assert abs(view.slice_renderer.plan.slice_position(cursor) - view.slice_renderer.slice_position) < 1e-6
        crosshair = view.physical_widget_pos(cursor)
        # ... and the point drawn under its crosshair is the clicked point
        np.testing.assert_allclose(view.widget_to_physical(crosshair), cursor, atol=1e-6)
        pixels = pixels_of(view)
        assert region_mean(pixels, crosshair).min() > 200, f"{name}: the clicked sphere is not under the crosshair"
        blobs = bright_blobs(pixels)
        middle = min(blobs, key=lambda b: np.hypot(b[0] - crosshair.x(), b[1] - crosshair.y()))
        assert np.hypot(middle[0] - crosshair.x(), middle[1] - crosshair.y()) < 4
        side_pos, above_pos = view.physical_widget_pos(markers[side_marker]), view.physical_widget_pos(markers[above_marker])
        assert np.sign(side_pos.x() - crosshair.x()) == side and abs(side_pos.y() - crosshair.y()) < 4
        assert above_pos.y() < crosshair.y() - 40 and abs(above_pos.x() - crosshair.x()) < 4
        for marker in (side_marker, above_marker):
            assert region_mean(pixels, view.physical_widget_pos(markers[marker])).min() > 200, (name, marker)
        for blob in blobs:
            assert abs(blob[2] - blob[3]) <= 0.2 * max(blob[2], blob[3]), (name, blob)
    # the 3D planes follow the cursor too
    scene = getattr(window.view3d, "scene", None)
    if scene is not None:
        np.testing.assert_allclose(scene.cursor, cursor, atol=1e-6)


def test_shift_drag_moves_the_cursor_and_the_crosshair_is_drawn(demo_window, qtbot):
    window = demo_window
    axial, coronal = window.axial_view, window.coronal_view
    volume = window.document.active_volume
    start = window.cursor_point
    begin, end = axial.voxel_widget_pos(60, 70), axial.voxel_widget_pos(120, 90)
    drag(axial.vtk_widget, Qt.MouseButton.LeftButton, begin, end, Qt.KeyboardModifier.ShiftModifier)
    index = volume.geometry.physical_to_index(window.cursor_point)
    np.testing.assert_allclose(index, (120, 90, volume.geometry.physical_to_index(start)[2]), atol=1.01)
    assert window.sagittal_view.slice_index == round(index[0]) and coronal.slice_index == round(index[1])
    assert axial.window_level == window.coronal_view.window_level  # shift-drag is not window/level
    settle(qtbot, window)
    pixels = pixels_of(axial)
    cross = axial.physical_widget_pos(window.cursor_point)
    x, y = round(cross.x()), round(cross.y())
    row = pixels[y - 30, x - 2 : x + 3].astype(int)  # crosses the vertical (sagittal, yellow) line
    above = row[np.argmax(row[:, 0] + row[:, 1] - 2 * row[:, 2])]
    assert above[0] > 150 and above[1] > 130 and above[2] < above[0] - 60, row
    column = pixels[y - 2 : y + 3, x + 30].astype(int)  # crosses the horizontal (coronal, green) line
    right = column[np.argmax(2 * column[:, 1] - column[:, 0] - column[:, 2])]
    assert right[1] > right[0] + 40 and right[1] > right[2] + 40, column


# -- navigation -----------------------------------------------------------------------------
def test_scroll_zoom_pan_and_fit_change_what_coronal_and_sagittal_show(demo_window, qtbot):
    window = demo_window
    for view in (window.coronal_view, window.sagittal_view):
        widget = view.vtk_widget
        before, start = pixels_of(view), view.slice_index
        wheel(widget, +2)
        assert view.slice_index == start + 2
        assert window.cursor_point is not None and window.axial_view.slice_index == window.document.active_volume.shape[0] // 2
        settle(qtbot, window)
        scrolled = pixels_of(view)
        assert np.abs(scrolled.astype(int) - before.astype(int)).sum() > 0, "scrolling did not change the image"
        widget.setFocus()
        qtbot.keyClick(widget, Qt.Key.Key_Down)
        qtbot.keyClick(widget, Qt.Key.Key_PageDown)
        assert view.slice_index == start
        zoom = view.slice_renderer.zoom_factor
        wheel(widget, +3, Qt.KeyboardModifier.ControlModifier)
        assert view.slice_index == start and view.slice_renderer.zoom_factor == pytest.approx(zoom * 1.15**3)
        settle(qtbot, window)
        zoomed = pixels_of(view)
        assert np.abs(zoomed.astype(int) - before.astype(int)).sum() > 0
        centre = QPoint(widget.width() // 2, widget.height() // 2)
        drag(widget, Qt.MouseButton.RightButton, centre, centre + QPoint(0, 60))
        assert view.slice_renderer.zoom_factor != pytest.approx(zoom * 1.15**3)
        camera = view.slice_renderer.renderer.GetActiveCamera()
        focal = np.array(camera.GetFocalPoint())
        drag(widget, Qt.MouseButton.MiddleButton, centre, centre + QPoint(40, 25))
        assert np.linalg.norm(np.array(camera.GetFocalPoint()) - focal) > 1.0
        qtbot.keyClick(widget, Qt.Key.Key_R)  # fit to the view again
        assert view.slice_renderer.zoom_factor == pytest.approx(zoom)
        settle(qtbot, window)
        np.testing.assert_array_equal(pixels_of(view), before)  # same slice, same camera


def test_window_level_is_shared_and_has_numeric_entry_and_presets(demo_window, qtbot):
    window = demo_window
    sagittal = window.sagittal_view
    before = pixels_of(window.coronal_view)
    centre = QPoint(sagittal.vtk_widget.width() // 2, sagittal.vtk_widget.height() // 2)
    drag(sagittal.vtk_widget, Qt.MouseButton.LeftButton, centre, centre + QPoint(-80, 40))
    dragged = sagittal.window_level
    assert dragged.width < 400 and dragged.center < 40  # dragged left: narrower; down: lower level
    assert all(v.window_level == dragged for v in window.slice_views.values())
    assert window.window_bar.width_box.value() == pytest.approx(dragged.width, abs=1)
    settle(qtbot, window)
    assert np.abs(pixels_of(window.coronal_view).astype(int) - before.astype(int)).sum() > 0
    # numeric entry
    window.window_bar.width_box.setValue(1500)
    window.window_bar.level_box.setValue(-600)
    window.window_bar.level_box.editingFinished.emit()
    assert window.axial_view.window_level.width == 1500 and window.axial_view.window_level.center == -600
    # presets: the menu offers the CT windows; picking one applies it everywhere
    names = [a.data() for a in window.window_bar.presets_menu.actions()]
    for expected in ("Abdomen", "Soft tissue", "Lung", "Bone", "Brain", "Liver"):
        assert expected in names
    bone = next(a for a in window.window_bar.presets_menu.actions() if a.data() == "Bone")
    bone.trigger()
    assert all((v.window_level.center, v.window_level.width) == (400, 1800) for v in window.slice_views.values())
    assert window.apply_window_preset("liver").width == 150
    with pytest.raises(ValueError, match="available"):
        window.apply_window_preset("spaghetti")
    window.reset_window_action.trigger()
    assert (window.window_level.center, window.window_level.width) == (40, 400)
    assert window.axial_view.slice_renderer.corner_texts()["lower_right"] == "W 400  L 40"


def test_linear_and_nearest_interpolation_differ_when_zoomed(demo_window, qtbot):
    window = demo_window
    view = window.axial_view
    view.zoom(6.0)
    assert window.interpolation_action.isChecked()  # linear by default
    settle(qtbot, window)
    smooth = pixels_of(view)
    window.interpolation_action.trigger()
    assert not view.slice_renderer.linear_interpolation
    settle(qtbot, window)
    blocky = pixels_of(view)
    assert np.abs(smooth.astype(int) - blocky.astype(int)).sum() > 0
    # nearest: the zoomed image is made of flat blocks (many equal neighbours)
    same = lambda p: np.mean(np.all(p[:, 1:] == p[:, :-1], axis=2))  # noqa: E731
    assert same(blocky) > same(smooth)


# -- label overlay --------------------------------------------------------------------------
def test_overlay_appears_where_labels_are_set_in_every_view_and_outline_mode(demo_window, qtbot):
    window = demo_window
    window.crosshair_action.trigger()
    segmentation = window.document.segmentation()
    segmentation.segments.add("marker", (30, 90, 255), label=9)
    volume = window.document.active_volume
    i, j, k = (int(v) for v in np.rint(volume.geometry.physical_to_index(window.cursor_point)))
    # a cube of label 9 around the cursor, in the phantom's soft tissue
    cube = Box((k - 6, j - 14, i - 14), (k + 7, j + 15, i + 15))
    with qtbot.waitSignals([v.overlay_updated for v in window.slice_views.values()], timeout=3000):
        segmentation.labelmap.write(cube, np.uint8(9))
    settle(qtbot, window)
    probe = volume.geometry.index_to_physical((i + 7, j + 7, k + 3))  # inside the cube, off the crosshair
    outside = volume.geometry.index_to_physical((i + 7, j + 25, k + 3))
    for name, view in window.slice_views.items():
        pixels = pixels_of(view)
        inside_rgb = region_mean(pixels, view.physical_widget_pos(probe))
        assert inside_rgb[2] > inside_rgb[0] + 40 and inside_rgb[2] > inside_rgb[1] + 15, (name, inside_rgb)
        if name != "coronal":  # 'outside' differs only in j, which the coronal view projects away
            outside_rgb = region_mean(pixels, view.physical_widget_pos(outside))
            assert outside_rgb[2] < outside_rgb[0] + 25, (name, outside_rgb)
    # Outline only: the cube's middle shows the scan again, its border stays blue.
    window.outline_action.trigger()
    assert window.segment_panel.outline_check.isChecked()
    settle(qtbot, window)
    axial = window.axial_view
    pixels = pixels_of(axial)
    middle = region_mean(pixels, axial.physical_widget_pos(probe), radius=1)
    assert abs(middle[2] - middle[0]) < 25, middle
    border = axial.physical_widget_pos(volume.geometry.index_to_physical((i + 14, j, k)))
    strip = pixels[round(border.y()) - 8 : round(border.y()) + 8, round(border.x()) - 3 : round(border.x()) + 4]
    assert np.any((strip[..., 2].astype(int) - strip[..., 0]) > 60), "outline not drawn"
    window.outline_action.trigger()
    # opacity slider: 0 hides the overlay
    window.segment_panel.opacity_slider.setValue(0)
    settle(qtbot, window)
    rgb = region_mean(pixels_of(axial), axial.physical_widget_pos(probe))
    assert abs(rgb[2] - rgb[0]) < 25, rgb


def test_views_whose_slice_misses_the_edit_do_not_re_render(demo_window, qtbot, monkeypatch):
    window = demo_window
    volume = window.document.active_volume
    labels = window.document.segmentation().labelmap
    i, j, k = (int(v) for v in np.rint(volume.geometry.physical_to_index(window.cursor_point)))
    renders = {name: 0 for name in window.slice_views}
    for name, view in window.slice_views.items():
        original = view.request_render

        def counting(original=original, name=name):
            renders[name] += 1
            original()

        monkeypatch.setattr(view, "request_render", counting)
    uploads = {name: len(v.slice_renderer.label_uploads) for name, v in window.slice_views.items()}
    labels.paint(np.ones((1, 5, 5), bool), 3, offset=(k, 4, 4))  # axial slice k, far from i and j
    QApplication.processEvents()
    assert renders == {"axial": 1, "coronal": 0, "sagittal": 0}
    assert len(window.axial_view.slice_renderer.label_uploads) == uploads["axial"] + 1
    assert len(window.coronal_view.slice_renderer.label_uploads) == uploads["coronal"]
    assert len(window.sagittal_view.slice_renderer.label_uploads) == uploads["sagittal"]
    labels.paint(np.ones((3, 1, 3), bool), 3, offset=(2, j, 4))  # crosses only the coronal plane
    QApplication.processEvents()
    assert renders == {"axial": 1, "coronal": 1, "sagittal": 0}


def test_3d_surface_appears_after_a_label_is_set(window, qtbot):
    array = np.full((30, 64, 64), -1000, np.int16)
    array[:, 8:56, 8:56] = 40
    volume = Volume(array, Geometry(array.shape, (1.5, 1.5, 2.0)), VolumeInfo(name="blank", modality="CT"))
    window.document.add_volume(volume)
    view3d = window.view3d
    if not hasattr(view3d, "surface_labels"):
        pytest.skip("the 3D view is not available in this build")
    window.slice_planes_action.trigger()  # planes off: the surface alone in front of the camera
    segmentation = window.document.segmentation(volume)
    segmentation.segments.add("lesion", (250, 30, 30), label=1)
    qtbot.waitUntil(lambda: not view3d.busy, timeout=10000)
    settle(qtbot, window)
    reddish = lambda p: int(np.count_nonzero((p[..., 0] > 120) & (p[..., 0] > p[..., 1] + 60) & (p[..., 0] > p[..., 2] + 60)))  # noqa: E731
    before = reddish(pixels_of(view3d))
    assert 1 not in view3d.surface_labels()
    ball = np.zeros((14, 24, 24), bool)
    z, y, x = np.mgrid[0:14, 0:24, 0:24]
    ball[((z - 6.5) * 2.0 / 14) ** 2 + ((y - 11.5) / 12) ** 2 + ((x - 11.5) / 12) ** 2 <= 1.0] = True
    with qtbot.waitSignal(view3d.surfaces_updated, timeout=15000):
        segmentation.labelmap.paint(ball, 1, offset=(8, 20, 20))
    assert 1 in view3d.surface_labels()
    settle(qtbot, window)
    after = reddish(pixels_of(view3d))
    assert after > before + 500, (before, after)
    # the segment list counts the new voxels (debounced)
    window.segment_panel.flush_counts()
    row = window.segment_panel.model.row_of(1)
    assert window.segment_panel.model.index(row, 4).data().replace("\u2009", "") == str(int(ball.sum()))
    # volume rendering from the View menu, and the menu follows the 3D view's own toggle
    preset = view3d.volume_rendering_presets()[-1]
    window.set_volume_rendering(True, preset)
    assert window.volume_rendering_action.isChecked()
    assert [a.text() for a in window.volume_rendering_presets_group.actions() if a.isChecked()] == [preset]
    view3d.volume_button.click()
    assert not window.volume_rendering_action.isChecked()


# -- layout ---------------------------------------------------------------------------------
def test_layouts_maximise_and_settings(window, qtbot, isolated_settings):
    window.open_demo()
    assert window.layout_state.layout == "2x2"
    assert all(v.isVisible() for v in window.slice_views.values()) and window.view3d.isVisible()
    QApplication.processEvents()
    width = window.axial_view.width()
    assert abs(window.view3d.width() - width) <= 2 and abs(window.coronal_view.width() - width) <= 2
    status = getattr(window.view3d, "status_label", None)
    if status is not None:  # a long status text in the 3D header must not squeeze the slice views
        status.setText("Updating surfaces of every segment, please wait\u2026")
        QApplication.processEvents()
        assert window.axial_view.width() == width
        status.setText("")
    window.layout_actions["1x3"].trigger()
    assert [n for n in ("axial", "coronal", "sagittal") if window.slice_views[n].isVisible()] == ["axial", "coronal", "sagittal"]
    assert not window.view3d.isVisible()
    window.layout_actions["2x2"].trigger()
    coronal = window.coronal_view
    qtbot.mouseDClick(coronal.vtk_widget, Qt.MouseButton.LeftButton, pos=QPoint(30, 30))
    assert window.layout_state.maximised == "coronal"
    assert coronal.isVisible() and not window.axial_view.isVisible()
    QApplication.processEvents()
    assert coronal.vtk_widget.width() > window.view_layout.width() * 0.9
    window.maximise_action.trigger()  # back (the coronal view was used last)
    assert window.layout_state.maximised is None and window.axial_view.isVisible()
    window.axial_view.maximise_button.click()  # the header button does the same
    assert window.layout_state.maximised == "axial" and not coronal.isVisible()
    window.axial_view.maximise_button.click()
    assert window.layout_state.maximised is None
    window.layout_actions["sagittal"].trigger()
    assert window.layout_state.layout == "sagittal" and not window.axial_view.isVisible()
    # remembered: a new window with the same settings opens in the same layout
    other = MainWindow(Document(), settings=isolated_settings)
    qtbot.wait(20)  # let start-up timers fire: they hold the window until they do
    try:
        assert other.layout_state.layout == "sagittal" and other.layout_actions["sagittal"].isChecked()
    finally:
        other.close()
        other.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert window.layout_actions["2x2"].shortcut().toString() == "Ctrl+1"


# -- panels ---------------------------------------------------------------------------------
def test_segment_panel_edits_the_segment_table(demo_window, qtbot):
    window = demo_window
    panel = window.segment_panel
    model = panel.model
    segmentation = window.document.segmentation()
    volume = window.document.active_volume
    assert model.rowCount() == 6
    liver = model.row_of(1)
    count = segmentation.labelmap.count(1)
    assert model.index(liver, 2).data() == "liver"
    assert model.index(liver, 4).data().replace("\u2009", "") == str(count)
    ml = float(model.index(liver, 5).data())
    assert ml == pytest.approx(count * volume.geometry.voxel_volume_mm3 / 1000, rel=1e-3)
    # visibility checkbox
    assert model.setData(model.index(liver, 0), Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert not segmentation.segments[1].visible
    # rename
    assert model.setData(model.index(liver, 2), "Liver (edited)", Qt.ItemDataRole.EditRole)
    assert segmentation.segments[1].name == "Liver (edited)"
    # lock toggles on click
    rect = panel.table.visualRect(model.index(liver, 3))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert segmentation.segments[1].locked
    # colour: clicking the swatch opens a colour dialog; choosing applies it
    rect = panel.table.visualRect(model.index(liver, 1))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    dialog = panel.color_dialog
    assert dialog is not None and dialog.isVisible()
    from PySide6.QtGui import QColor

    dialog.setCurrentColor(QColor(10, 200, 30))
    dialog.accept()
    assert segmentation.segments[1].color == (10, 200, 30)
    # counts follow edits (debounced)
    segmentation.labelmap.paint(np.ones((1, 3, 3), bool), 1, offset=(0, 0, 0))
    qtbot.waitUntil(lambda: model.index(liver, 4).data().replace("\u2009", "") == str(count + 9), timeout=3000)


def test_volumes_switch_background_and_keep_their_own_labels_and_window(demo_window, qtbot):
    window = demo_window
    demo = window.document.active_volume
    window.apply_window_preset("lung")
    array = np.random.default_rng(1).integers(0, 500, (20, 50, 60)).astype(np.int16)
    other = Volume(array, Geometry(array.shape, (2.0, 2.0, 3.0), (200.0, 0.0, 0.0)), VolumeInfo(name="second", modality="MR"))
    window.document.add_volume(other)
    assert window.axial_view.volume is other and window.data_panel.volume_list.count() == 2
    assert window.segment_panel.model.rowCount() == 0  # the second volume has its own (empty) label map
    assert window.data_panel.fact("Modality") == "MR" and window.data_panel.fact("Size") == "60 x 50 x 20"
    assert window.window_level.center != -600  # MR: automatic window, not the CT preset
    assert np.allclose(other.geometry.physical_to_index(window.cursor_point), (30, 25, 10))  # recentred: outside before
    window.data_panel.volume_list.setCurrentRow(0)
    assert window.document.active_volume is demo and window.axial_view.volume is demo
    assert window.segment_panel.model.rowCount() == 6
    assert (window.window_level.center, window.window_level.width) == (-600, 1500)  # remembered per volume
    window.close_volume_action.trigger()
    assert window.document.volumes == [other] and window.axial_view.volume is other


def test_tool_panel_hosts_tool_widgets_and_keeps_them(window):
    panel = window.tool_panel
    previous, previous_title = panel.tool_widget, panel.title  # another feature may have a tool up
    tool = QLabel("brush size")
    with_titles = []
    panel.tool_changed.connect(with_titles.append)
    window.set_tool_widget(tool, "Paint")
    assert panel.tool_widget is tool and panel.title == "Paint" and window.tool_dock.windowTitle() == "Paint"
    assert tool.isVisibleTo(panel) and not panel.placeholder.isVisibleTo(panel)
    window.set_tool_widget(None)
    assert panel.tool_widget is None and panel.placeholder.isVisibleTo(panel) and window.tool_dock.windowTitle() == "Tool"
    window.set_tool_widget(tool, "Paint")  # switching back shows the same, living widget
    assert panel.tool_widget is tool and not tool.isHidden()
    panel.remove_tool_widget(tool)
    assert panel.tool_widget is None and with_titles == ["Paint", "", "Paint", ""]
    if previous is not None:
        window.set_tool_widget(previous, previous_title)
        assert panel.tool_widget is previous


def test_shortcuts_dialog_tooltips_and_recent_files(window, qtbot, tmp_path):
    from medviewer.demo import make_demo_case
    from medviewer.io import write_volume

    actions = [a for a in window.findChildren(type(window.open_file_action)) if a.parent() is window and a.text()]
    assert all(a.toolTip() for a in actions)
    dialog = window.show_shortcuts()
    rows = dialog.rows()
    keys = {(action, key) for _, action, key in rows}
    assert ("Open File", "Ctrl+O") in keys and ("Four-up (2 x 2)", "Ctrl+1") in keys
    assert ("Keyboard and Mouse Shortcuts", "F1") in keys
    assert any(section == "Slice views" and "Zoom" in action for section, action, _ in rows)
    dialog.close()
    # recent files: an opened file goes to the top of File > Open Recent
    volume, _, _ = make_demo_case(shape=(6, 24, 24))
    path = tmp_path / "small.nii.gz"
    write_volume(path, volume)
    with qtbot.waitSignal(window.volume_loaded, timeout=10000):
        window.open_path(path)
    assert window.settings.recent_files()[0] == str(path.resolve())
    window.recent_menu.aboutToShow.emit()
    entries = [a for a in window.recent_menu.actions() if a.data()]
    assert entries and entries[0].data() == str(path.resolve())
    with qtbot.waitSignal(window.volume_loaded, timeout=10000):
        entries[0].trigger()
    assert len(window.document.volumes) == 2
