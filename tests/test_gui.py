"""The real main window under Xvfb: loading, slicing, window/level, readout, overlay."""

from __future__ import annotations

import gc
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication, QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from medviewer.io import write_array
from medviewer.io.errors import SeriesSelectionError
from medviewer.model import Box
from medviewer.ui.main_window import MainWindow, choose_drop_target
from medviewer.ui.series_dialog import series_row

from gui_support import demo_window, isolated_settings, keep_view_sizes_fixed, settle, window  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui


def _dicom_reader_available() -> bool:
    try:
        from medviewer.io.dicom import load_dicom  # noqa: F401
    except ImportError:
        return False
    return True


# -- helpers ------------------------------------------------------------------------------
def view_pixels(window: MainWindow) -> np.ndarray:
    """RGB screenshot (H, W, 3) of the VTK area, taken from the screen like a user sees it."""
    image = window.slice_view.grab_view().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return data.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def send_mouse(widget, kind, pos: QPoint, button=Qt.MouseButton.NoButton, buttons=Qt.MouseButton.NoButton, modifiers=Qt.KeyboardModifier.NoModifier):
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def hover(widget, pos: QPoint) -> None:
    send_mouse(widget, QMouseEvent.Type.MouseMove, pos)


def wheel(widget, steps: int) -> None:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


# -- tests --------------------------------------------------------------------------------
def test_demo_shows_middle_slice_rendered_with_letters_and_labels(demo_window):
    view = demo_window.slice_view
    volume = demo_window.document.active_volume
    segmentation = demo_window.document.segmentation(volume)
    assert volume is not None and view.volume is volume
    assert view.slice_index == volume.shape[0] // 2
    assert len(segmentation.segments) == 6 and segmentation.labelmap.count(1) > 0
    texts = view.slice_renderer.corner_texts()
    assert texts["lower_left"].startswith(f"Slice {volume.shape[0] // 2} / {volume.shape[0]}")
    assert texts["lower_right"] == "W 400  L 40"
    letters = view.slice_renderer.letters
    assert (letters.left, letters.right, letters.top, letters.bottom) == ("R", "L", "A", "P")
    pixels = view_pixels(demo_window)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 20, "the rendered slice looks blank"
    centre = pixels[pixels.shape[0] // 2 - 20 : pixels.shape[0] // 2 + 20, pixels.shape[1] // 2 - 20 : pixels.shape[1] // 2 + 20]
    assert centre.mean() > 40, "the middle of the view should show the phantom's soft tissue"
    assert demo_window.segment_panel.model.rowCount() == 6


def test_wheel_and_keys_change_slice_and_pixels(demo_window, qtbot):
    view = demo_window.slice_view
    vtk_widget = view.vtk_widget
    start = view.slice_index
    before = view_pixels(demo_window)
    wheel(vtk_widget, +1)
    assert view.slice_index == start + 1
    settle(qtbot, demo_window)
    after = view_pixels(demo_window)
    assert np.abs(after.astype(int) - before.astype(int)).sum() > 0, "scrolling did not change the image"
    wheel(vtk_widget, -1)
    wheel(vtk_widget, -1)
    assert view.slice_index == start - 1
    vtk_widget.setFocus()
    for key, expected in ((Qt.Key.Key_PageUp, start), (Qt.Key.Key_Up, start + 1), (Qt.Key.Key_Down, start), (Qt.Key.Key_PageDown, start - 1)):
        qtbot.keyClick(vtk_widget, key)
        assert view.slice_index == expected, key
    qtbot.keyClick(vtk_widget, Qt.Key.Key_End)
    assert view.slice_index == view.num_slices - 1
    wheel(vtk_widget, +1)  # clamped at the last slice
    assert view.slice_index == view.num_slices - 1
    assert view.slice_slider.value() == view.num_slices - 1
    assert view.slice_renderer.corner_texts()["lower_left"].startswith(f"Slice {view.num_slices - 1} /")


def test_left_drag_changes_window_level_and_image(demo_window, qtbot):
    view = demo_window.slice_view
    vtk_widget = view.vtk_widget
    before_pixels = view_pixels(demo_window)
    before = view.window_level
    centre = QPoint(vtk_widget.width() // 2, vtk_widget.height() // 2)
    with qtbot.waitSignal(view.window_level_changed, timeout=2000):
        qtbot.mousePress(vtk_widget, Qt.MouseButton.LeftButton, pos=centre)
        send_mouse(vtk_widget, QMouseEvent.Type.MouseMove, centre + QPoint(120, -60), buttons=Qt.MouseButton.LeftButton)
        qtbot.mouseRelease(vtk_widget, Qt.MouseButton.LeftButton, pos=centre + QPoint(120, -60))
    after = view.window_level
    assert after.width > before.width  # dragged right: wider window
    assert after.center > before.center  # dragged up: higher level
    assert view.slice_renderer.corner_texts()["lower_right"] != "W 400  L 40"
    settle(qtbot, demo_window)
    assert np.abs(view_pixels(demo_window).astype(int) - before_pixels.astype(int)).sum() > 0
    # Moving without a button afterwards does not change the window any more.
    hover(vtk_widget, centre)
    assert view.window_level == after


def test_status_bar_reads_the_voxel_under_the_mouse(demo_window):
    view = demo_window.slice_view
    volume = demo_window.document.active_volume
    labels = demo_window.document.segmentation().labelmap
    k = view.slice_index
    nz, ny, nx = volume.shape
    # Radiological layout: i grows to the right, j (posterior) grows downwards, and the
    # fitted image is centred in the view.
    top_left, bottom_right = view.voxel_widget_pos(10, 10), view.voxel_widget_pos(nx - 10, ny - 10)
    assert top_left.x() < bottom_right.x() and top_left.y() < bottom_right.y()
    middle = view.voxel_widget_pos((nx - 1) / 2, (ny - 1) / 2)
    assert abs(middle.x() - view.vtk_widget.width() / 2) <= 2 and abs(middle.y() - view.vtk_widget.height() / 2) <= 2
    # A voxel inside the liver (label 1).
    j, i = np.argwhere(labels.array[k] == 1)[len(np.argwhere(labels.array[k] == 1)) // 2]
    hover(view.vtk_widget, view.voxel_widget_pos(i, j))
    text = demo_window.readout_label.text()
    x, y, z = volume.geometry.index_to_physical((i, j, k))
    expected = f"Voxel ({i}, {j}, {k})   LPS ({x:.2f}, {y:.2f}, {z:.2f}) mm   {volume.array[k, j, i]} HU   [1] liver"
    assert text == expected
    # The patient's right is on the screen's left: a voxel further left has a smaller x (more R).
    hover(view.vtk_widget, view.voxel_widget_pos(i - 5, j))
    left_x = float(re.search(r"LPS \(([-\d.]+),", demo_window.readout_label.text()).group(1))
    assert left_x == pytest.approx(x - 5 * volume.geometry.spacing[0], abs=0.01)
    # Outside the image the readout is empty.
    hover(view.vtk_widget, QPoint(2, view.vtk_widget.height() // 2))
    assert demo_window.readout_label.text() == ""


def test_painting_labels_updates_the_overlay_through_the_event(demo_window, qtbot):
    view = demo_window.slice_view
    labels = demo_window.document.segmentation().labelmap
    k = view.slice_index
    assert labels.array[k, 4:24, 4:24].max() == 0  # air in the image corner
    centre = view.voxel_widget_pos(14, 14)
    ratio = view.vtk_widget.devicePixelRatioF()
    row, col = round(centre.y() * ratio), round(centre.x() * ratio)
    before = view_pixels(demo_window)[row, col].astype(int)
    assert abs(before[0] - before[1]) < 8 and abs(before[0] - before[2]) < 8  # grey
    with qtbot.waitSignal(view.overlay_updated, timeout=2000) as blocker:
        labels.paint(np.ones((1, 20, 20), bool), 1, offset=(k, 4, 4))
    assert blocker.args[0] == Box((k, 4, 4), (k + 1, 24, 24))
    assert view.slice_renderer.label_uploads[-1] == Box((k, 4, 4), (k + 1, 24, 24))
    # No explicit render call: the event scheduled the repaint.
    liver = demo_window.document.segmentation().segments[1].color  # red-dominant

    def tinted() -> bool:
        r, g, b = view_pixels_no_render(view, row, col)
        return r > g + 25 and r > b + 25

    qtbot.waitUntil(tinted, timeout=3000)
    assert liver[0] > liver[1] and liver[0] > liver[2]
    # Edits on another slice upload nothing.
    uploads = len(view.slice_renderer.label_uploads)
    labels.paint(np.ones((1, 5, 5), bool), 2, offset=(0, 4, 4))
    assert len(view.slice_renderer.label_uploads) == uploads
    # Hiding the segment removes the tint (segment table event).
    demo_window.document.segmentation().segments.update(1, visible=False)
    qtbot.waitUntil(lambda: abs(int(view_pixels_no_render(view, row, col)[0]) - int(view_pixels_no_render(view, row, col)[1])) < 8, timeout=3000)


def view_pixels_no_render(view, row: int, col: int) -> np.ndarray:
    """One screen pixel of the view without forcing a render (only Qt's own repaint)."""
    screen = view.vtk_widget.screen() or QGuiApplication.primaryScreen()
    image = screen.grabWindow(int(view.vtk_widget.winId())).toImage().convertToFormat(QImage.Format.Format_RGB888)
    color = image.pixelColor(col, row)
    return np.array([color.red(), color.green(), color.blue()])


def test_corrupt_file_reports_error_and_keeps_the_volume(demo_window, qtbot, tmp_path):
    demo_volume = demo_window.document.active_volume
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"this is not a NIfTI file at all" * 20)
    with qtbot.waitSignal(demo_window.load_failed, timeout=10000) as blocker:
        demo_window.open_path(str(bad))
    message = blocker.args[0]
    assert "bad.nii" in message
    assert demo_window.last_message_box is not None and "bad.nii" in demo_window.last_message_box.text()
    demo_window.last_message_box.close()
    assert demo_window.document.active_volume is demo_volume
    assert demo_window.document.volumes == [demo_volume]
    assert demo_window.slice_view.volume is demo_volume
    assert not demo_window.is_busy
    settle(qtbot, demo_window)
    assert view_pixels(demo_window).std() > 20


@pytest.mark.skipif(not _dicom_reader_available(), reason="medviewer.io.dicom is not available yet")
def test_open_real_dicom_file_and_read_hounsfield_units(window, qtbot):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    with qtbot.waitSignal(window.volume_loaded, timeout=20000) as blocker:
        window.open_path(path)
    volume = blocker.args[0]
    assert window.document.active_volume is volume and window.slice_view.volume is volume
    dataset = pydicom.dcmread(path)
    hu = dataset.pixel_array.astype(float) * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    settle(qtbot, window)
    assert view_pixels(window).std() > 10
    view = window.slice_view
    for i, j in ((64, 64), (30, 90), (100, 20)):
        hover(view.vtk_widget, view.voxel_widget_pos(i, j))
        text = window.readout_label.text()
        assert text.startswith(f"Voxel ({i}, {j}, 0)")
        value = float(re.search(r"mm   (-?[\d.]+) HU", text).group(1))
        assert value == hu[j, i]
        x, y, z = volume.geometry.index_to_physical((i, j, 0))
        assert f"LPS ({x:.2f}, {y:.2f}, {z:.2f}) mm" in text


def test_label_map_loading_matches_grid_or_explains(demo_window, qtbot, tmp_path):
    volume = demo_window.document.active_volume
    good = np.zeros(volume.shape, np.uint8)
    good[volume.shape[0] // 2, 10:30, 10:30] = 9
    write_array(tmp_path / "labels.nii.gz", good, volume.geometry)
    with qtbot.waitSignal(demo_window.labels_loaded, timeout=10000):
        demo_window.load_labels(str(tmp_path / "labels.nii.gz"))
    segmentation = demo_window.document.segmentation(volume)
    assert segmentation.labelmap.count(9) == 400 and 9 in segmentation.segments
    assert np.all(demo_window.slice_view.slice_renderer.label_slice()[10:30, 10:30] == 9)

    wrong = np.zeros((4, 5, 6), np.uint8)
    write_array(tmp_path / "wrong.nii.gz", wrong, volume.geometry.with_shape((4, 5, 6)))
    with qtbot.waitSignal(demo_window.load_failed, timeout=10000) as blocker:
        demo_window.load_labels(str(tmp_path / "wrong.nii.gz"))
    assert "wrong.nii.gz" in blocker.args[0] and "size" in blocker.args[0]
    assert demo_window.last_message_box is not None
    demo_window.last_message_box.close()
    assert segmentation.labelmap.count(9) == 400  # unchanged


def test_series_picker_opens_the_chosen_series(window, qtbot, monkeypatch):
    from medviewer.demo import make_demo_case

    series = [
        SimpleNamespace(key="a", description="T1 axial", modality="MR", rows=256, columns=256, num_slices=40, warnings=[], summary=lambda: "T1"),
        SimpleNamespace(key="b", description="CT abdomen", modality="CT", rows=512, columns=512, num_slices=96,
                        warnings=["irregular spacing"], summary=lambda: "CT"),
    ]
    requested = []

    def fake_load_volume(path, series_key=None, control=None):
        requested.append(series_key)
        if series_key is None:
            raise SeriesSelectionError("2 series found", path, series=series)
        return make_demo_case(shape=(6, 32, 32))[0]

    monkeypatch.setattr("medviewer.ui.main_window.load_volume", fake_load_volume)
    window.open_path("/data/study")
    qtbot.waitUntil(lambda: window._series_dialog is not None and window._series_dialog.isVisible(), timeout=5000)
    dialog = window._series_dialog
    assert dialog.table.topLevelItemCount() == 2
    assert [dialog.table.topLevelItem(1).text(c) for c in range(5)] == list(series_row(series[1]))
    dialog.table.setCurrentItem(dialog.table.topLevelItem(1))
    with qtbot.waitSignal(window.volume_loaded, timeout=5000):
        dialog.accept()
    assert requested == [None, "b"]
    assert window.slice_view.num_slices == 6


def test_series_dialog_rows():
    row = series_row(SimpleNamespace(key="x", description="", modality="", rows=0, columns=0, num_slices=3, warnings=["a", "b"]))
    assert row == ("(no description)", "?", "?", "3", "a; b")


def test_cancel_stops_a_slow_load(window, qtbot, monkeypatch):
    started = []

    def slow_load(path, series_key=None, control=None):
        started.append(path)
        for step in range(400):
            control.report(step, 400, f"Reading slice {step}")
            time.sleep(0.005)
        raise AssertionError("the job should have been cancelled")

    monkeypatch.setattr("medviewer.ui.main_window.load_volume", slow_load)
    failures = []
    window.load_failed.connect(failures.append)
    window.open_path("/data/slow")
    qtbot.waitUntil(lambda: window.progress_bar.isVisible() and window.progress_bar.maximum() == 400, timeout=5000)
    assert window.is_busy and window.cancel_button.isVisible()
    with qtbot.waitSignal(window.busy_changed, timeout=2000):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert not window.is_busy and not window.progress_bar.isVisible()
    qtbot.wait(100)
    assert failures == [] and window.document.active_volume is None


def test_drop_opens_files_and_folders(window, qtbot, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(window, "open_path", lambda path, series_key=None: opened.append(path))
    slices = [tmp_path / f"IM{n}" for n in range(3)]
    for path in slices:
        path.write_bytes(b"x")
    assert choose_drop_target(slices) == tmp_path  # several slices of a series -> their folder
    nifti = tmp_path / "a.nii.gz"
    nifti.write_bytes(b"x")
    assert choose_drop_target([nifti]) == nifti
    assert choose_drop_target([tmp_path / "missing"]) is None
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(nifti))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert opened == [str(nifti)]


def test_non_square_pixels_keep_their_physical_aspect(window, qtbot):
    from medviewer.model import Geometry, Volume, VolumeInfo

    array = np.zeros((3, 40, 100), np.int16)
    array[:, ::2, :] = 100  # stripes, so the rendered image is not flat
    volume = Volume(array, Geometry(array.shape, spacing=(0.5, 2.0, 3.0)), VolumeInfo(name="anisotropic"))
    window.document.add_volume(volume)  # the window follows the document's events
    view = window.slice_view
    assert view.volume is volume and view.slice_index == 1
    settle(qtbot, window)
    origin, right, down = view.voxel_widget_pos(0, 0), view.voxel_widget_pos(80, 0), view.voxel_widget_pos(0, 20)
    # 80 voxels of 0.5 mm across and 20 voxels of 2 mm down are both 40 mm long on screen.
    assert right.x() - origin.x() == pytest.approx(down.y() - origin.y(), abs=2)
    assert right.y() == origin.y() and down.x() == origin.x()
    # 50 mm wide, 80 mm tall: the fitted image fills the view's height.
    assert (view.voxel_widget_pos(0, 39.5).y() - view.voxel_widget_pos(0, -0.5).y()) == pytest.approx(
        view.vtk_widget.height() / 1.03, abs=3
    )


@pytest.mark.skipif(not _dicom_reader_available(), reason="medviewer.io.dicom is not available yet")
def test_dicom_folder_with_two_series_asks_which_one(window, qtbot, tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    window.open_path(str(tmp_path))
    qtbot.waitUntil(lambda: window._series_dialog is not None and window._series_dialog.isVisible(), timeout=20000)
    dialog = window._series_dialog
    rows = {dialog.table.topLevelItem(n).text(1): n for n in range(dialog.table.topLevelItemCount())}
    assert set(rows) == {"CT", "MR"}
    assert dialog.table.topLevelItem(rows["MR"]).text(2) == "64 x 64"
    # each row gets a thumbnail of its middle image, decoded in the background
    assert dialog.wait_for_thumbnails(10000)
    qtbot.waitUntil(lambda: len(dialog.thumbnails_shown) == 2, timeout=5000)
    icon = dialog.table.topLevelItem(rows["MR"]).icon(0).pixmap(64, 64).toImage()
    greys = {icon.pixelColor(x, y).red() for x in range(8, 56, 4) for y in range(8, 56, 4)}
    assert len(greys) > 5, "the thumbnail should show the image, not a flat placeholder"
    dialog.table.setCurrentItem(dialog.table.topLevelItem(rows["MR"]))
    with qtbot.waitSignal(window.volume_loaded, timeout=20000) as blocker:
        dialog.accept()
    assert blocker.args[0].info.modality == "MR" and window.slice_view.volume is blocker.args[0]


def test_help_about_and_menus(window, qtbot):  # noqa: D103
    menus = [action.text() for action in window.menuBar().actions()]
    assert menus[0] == "&File" and menus.index("&View") < menus.index("&Help")  # other features may add menus
    assert window.open_file_action.shortcut().toString() == "Ctrl+O"
    assert window.open_file_action.toolTip() and not window.load_labels_action.isEnabled()
    window.about_action.trigger()
    boxes = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.windowTitle() == "About medviewer"]
    assert boxes
    boxes[0].close()


def test_run_app_screenshot_mode_with_file_and_labels(qtbot, tmp_path):
    from medviewer.demo import make_demo_case
    from medviewer.io import write_volume
    from medviewer.ui.app import run_app

    volume, labels, _ = make_demo_case(shape=(12, 64, 64), spacing=(4.8, 4.8, 2.5))  # air around the body: CT-like
    write_volume(tmp_path / "scan.nii.gz", volume)
    write_array(tmp_path / "labels.nii.gz", labels.array, volume.geometry)
    shot = tmp_path / "shot.png"
    assert run_app(str(tmp_path / "scan.nii.gz"), labels=str(tmp_path / "labels.nii.gz"), screenshot=str(shot)) == 0
    image = QImage(str(shot)).convertToFormat(QImage.Format.Format_RGB888)
    assert image.width() >= 1000 and image.height() >= 700
    pixels = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes()).reshape(image.height(), image.bytesPerLine())
    assert pixels.std() > 20
    # --layout and --preset: three slice views in a row, lung window; the user's layout is kept
    wide = tmp_path / "wide.png"
    assert run_app(str(tmp_path / "scan.nii.gz"), screenshot=str(wide), layout="1x3", preset="lung") == 0
    assert QImage(str(wide)).width() >= 1000
    assert QSettings().value("view/layout") in (None, "2x2")
    assert run_app(str(tmp_path / "scan.nii.gz"), screenshot=str(tmp_path / "x.png"), preset="nonsense") == 1
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"junk" * 100)
    assert run_app(str(bad), screenshot=str(tmp_path / "bad.png")) == 1
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
