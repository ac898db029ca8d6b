"""Manual editing in the real main window under Xvfb: brush, undo, lock, export/import, autosave."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from medviewer.model import Document
from medviewer.ui.main_window import MainWindow

from gui_support import drag, isolated_settings, send_mouse, settle, view_pixels, wait_for_job  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def isolated(isolated_settings, tmp_path, monkeypatch):
    """Temp QSettings and a temp recovery folder (autosaves never reach the user's data)."""
    monkeypatch.setenv("MEDVIEWER_RECOVERY_DIR", str(tmp_path / "recovery"))
    return isolated_settings


def _new_window(qtbot, settings) -> MainWindow:
    window = MainWindow(Document(), settings=settings)
    qtbot.addWidget(window)
    window.resize(1240, 940)
    window.show()
    qtbot.waitExposed(window)
    window.set_layout("axial")
    return window


@pytest.fixture
def make_window(qtbot, isolated):
    """Creates main windows and deletes them (with their VTK views) while Xvfb still runs."""
    created: list[MainWindow] = []

    def make() -> MainWindow:
        created.append(_new_window(qtbot, isolated))
        return created[-1]

    yield make
    for window in created:
        window.close()
        window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    created.clear()
    gc.collect()


@pytest.fixture
def demo_window(make_window, qtbot):
    window = make_window()
    window.open_demo()
    settle(qtbot, window)
    return window


def centre_pos(view) -> QPointF:
    return view.physical_widget_pos(view.cursor)


# -- tests --------------------------------------------------------------------------------
def test_paint_drag_paints_active_segment_updates_overlay_and_undoes(demo_window, qtbot):
    window = demo_window
    editing = window.editing
    view = window.axial_view
    segmentation = window.document.segmentation()
    label = window.segment_panel.add_segment("Tumor")
    assert window.segment_panel.current_label() == label
    qtbot.mouseClick(editing.panel.buttons["paint"], Qt.MouseButton.LeftButton)
    assert editing.tool == "paint" and view.view_tool is editing.brush_view_tool
    editing.panel.radius_spin.setValue(6.0)
    before_array = segmentation.labelmap.array.copy()
    assert not editing.undo_action.isEnabled() or "Tumor" in editing.undo_action.text()
    settle(qtbot, window)
    before = view_pixels(window.axial_view)

    centre = centre_pos(view)
    points = [QPointF(centre.x() - 40 + 10 * i, centre.y()) for i in range(9)]
    drag(view.vtk_widget, points)
    settle(qtbot, window, 60)

    painted = segmentation.labelmap.array == label
    assert painted.sum() > 50
    assert np.array_equal(np.flatnonzero(painted.reshape(painted.shape[0], -1).any(axis=1)), [view.slice_index])
    assert segmentation.history.undo_text.startswith("Paint")
    assert editing.undo_action.isEnabled() and "Paint" in editing.undo_action.text()
    after = view_pixels(window.axial_view)
    x, y = round(centre.x()) - 20, round(centre.y()) - 8  # off the crosshair lines
    ratio = view.vtk_widget.devicePixelRatioF() or 1.0
    px, py = round(x * ratio), round(y * ratio)
    assert np.abs(after[py, px].astype(int) - before[py, px].astype(int)).sum() > 30, "overlay did not change"

    # One drag is one undo step; Ctrl+Z restores the exact array.
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)
    view.vtk_widget.setFocus()
    qtbot.keyClick(view.vtk_widget, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QApplication.processEvents()
    assert np.array_equal(segmentation.labelmap.array, before_array)
    assert editing.redo_action.isEnabled() and "Paint" in editing.redo_action.text()
    qtbot.keyClick(view.vtk_widget, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert (segmentation.labelmap.array == label).sum() == painted.sum()
    editing.undo_action.trigger()
    assert np.array_equal(segmentation.labelmap.array, before_array)

    # Right-drag still zooms, the brush does not paint with it.
    zoom = view.slice_renderer.zoom_factor
    right = Qt.MouseButton.RightButton
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonPress, centre, right, right)
    send_mouse(view.vtk_widget, QEvent.Type.MouseMove, QPointF(centre.x(), centre.y() - 40), Qt.MouseButton.NoButton, right)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonRelease, QPointF(centre.x(), centre.y() - 40), right)
    assert np.array_equal(segmentation.labelmap.array, before_array)
    assert view.slice_renderer.zoom_factor != zoom


def test_brush_size_keys_and_erase(demo_window, qtbot):
    editing = demo_window.editing
    view = demo_window.axial_view
    editing.set_tool("paint")
    radius = editing.brush.radius_mm
    editing.grow_action.trigger()
    assert editing.brush.radius_mm > radius
    assert abs(editing.panel.radius_spin.value() - editing.brush.radius_mm) < 0.06
    editing.shrink_action.trigger()
    assert abs(editing.brush.radius_mm - radius) < 1e-6
    segmentation = demo_window.document.segmentation()
    label = demo_window.segment_panel.current_label()
    count = (segmentation.labelmap.array == label).sum()
    # Erase the active segment where it is on this slice.
    k = view.slice_index
    ys, xs = np.nonzero(segmentation.labelmap.array[k] == label)
    assert ys.size, (label, k, np.unique(segmentation.labelmap.array[k]))
    editing.set_tool("erase")
    pos = view.voxel_widget_pos(float(xs[len(xs) // 2]), float(ys[len(ys) // 2]))
    drag(view.vtk_widget, [QPointF(pos), QPointF(pos.x() + 5, pos.y())])
    assert (segmentation.labelmap.array == label).sum() < count


def test_locked_segment_is_never_overwritten(demo_window, qtbot):
    window = demo_window
    editing = window.editing
    view = window.axial_view
    panel = window.segment_panel
    segmentation = window.document.segmentation()
    k = view.slice_index
    present = [s.label for s in segmentation.segments if (segmentation.labelmap.array[k] == s.label).any()]
    locked = present[0]
    # Lock by clicking the lock column.
    from medviewer.ui.segment_panel import LOCK

    rect = panel.table.visualRect(panel.model.index(panel.model.row_of(locked), LOCK))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert segmentation.segments[locked].locked
    locked_voxels = segmentation.labelmap.array == locked

    label = panel.add_segment("Liver lesion")
    editing.set_tool("paint")
    editing.set_brush_radius(45.0)
    ys, xs = np.nonzero(segmentation.labelmap.array[k] == locked)
    pos = view.voxel_widget_pos(float(xs[len(xs) // 2]), float(ys[len(ys) // 2]))
    drag(view.vtk_widget, [QPointF(pos), QPointF(pos.x() + 8, pos.y() + 8)])
    assert (segmentation.labelmap.array == label).sum() > 0, (editing.panel.status.text(), editing.policy.active_label, label)
    assert np.array_equal(segmentation.labelmap.array == locked, locked_voxels)

    # Painting the locked segment itself is refused with a message.
    panel.select_label(locked)
    drag(view.vtk_widget, [QPointF(pos), QPointF(pos.x() + 8, pos.y())])
    assert "locked" in editing.panel.status.text()


def test_segment_list_add_rename_merge_delete_move_are_undoable(demo_window, qtbot):
    panel = demo_window.segment_panel
    editing = demo_window.editing
    segments = demo_window.document.segmentation().segments
    labels = segments.labels()
    new = panel.add_segment("Spleen")  # anatomy colour comes from the name
    assert segments[new].name == "Spleen"
    editing.undo_action.trigger()
    assert new not in segments
    editing.redo_action.trigger()
    assert new in segments
    # Rename inline (through the model, as the editor delegate does).
    index = panel.model.index(panel.model.row_of(new), 2)
    assert panel.model.setData(index, "Kidney", Qt.ItemDataRole.EditRole)
    assert segments[new].name == "Kidney"
    assert "Rename" in editing.undo_action.text() or "rename" in editing.undo_action.text().lower()
    # Move up.
    panel.select_label(new)
    row = panel.model.row_of(new)
    panel.move_selected(-1)
    assert panel.model.row_of(new) == row - 1 and panel.current_label() == new
    # Merge two demo segments into the first.
    array = demo_window.document.segmentation().labelmap.array
    a, b = labels[0], labels[1]
    total = int((array == a).sum() + (array == b).sum())
    panel.select_label(a)
    panel.table.selectionModel().select(panel.model.index(panel.model.row_of(b), 0),
                                        panel.table.selectionModel().SelectionFlag.Select
                                        | panel.table.selectionModel().SelectionFlag.Rows)
    assert set(panel.selected_labels()) == {a, b}
    panel.merge_selected()
    assert b not in segments and int((demo_window.document.segmentation().labelmap.array == a).sum()) == total
    # Delete.
    panel.select_label(new)
    panel.delete_selected()
    assert new not in segments
    editing.undo_action.trigger()
    assert new in segments


def test_threshold_preview_and_apply(demo_window, qtbot):
    editing = demo_window.editing
    label = demo_window.segment_panel.add_segment("Bone")
    editing.set_tool("threshold")
    editing.panel.threshold_low.setValue(200.0)
    editing.panel.threshold_high.setValue(3000.0)
    overlay = editing.overlays["axial"]
    assert overlay.mask is not None and overlay.mask.any()
    settle(qtbot, demo_window)
    qtbot.mouseClick(editing.panel.threshold_apply, Qt.MouseButton.LeftButton)
    array = demo_window.document.segmentation().labelmap.array
    assert (array == label).sum() > 0
    assert overlay.mask is None


def test_paint_undo_export_and_reimport_roundtrip(demo_window, qtbot, tmp_path):
    window = demo_window
    editing = window.editing
    view = window.axial_view
    segmentation = window.document.segmentation()
    label = window.segment_panel.add_segment("Lesion")
    editing.set_tool("paint")
    editing.set_brush_radius(4.0)
    centre = centre_pos(view)
    drag(view.vtk_widget, [QPointF(centre.x() - 60, centre.y() - 50), QPointF(centre.x() - 30, centre.y() - 50)])
    kept = segmentation.labelmap.array.copy()
    drag(view.vtk_widget, [QPointF(centre.x() + 30, centre.y() + 50), QPointF(centre.x() + 60, centre.y() + 50)])
    assert (segmentation.labelmap.array == label).sum() > (kept == label).sum() > 0
    editing.undo_action.trigger()  # the second stroke goes; the export must not contain it
    assert np.array_equal(segmentation.labelmap.array, kept)
    names = {s.label: s.name for s in segmentation.segments}

    dialog = editing.show_export_dialog()
    seg_path = tmp_path / "case.seg.nrrd"
    dialog.set_format("seg.nrrd")
    assert wait_for_job(qtbot, dialog.export(str(seg_path))) == "succeeded" and seg_path.is_file()
    assert dialog.last_result.paths == [seg_path]
    nii_path = tmp_path / "case.nii.gz"
    dialog.set_format("nii.gz")
    assert wait_for_job(qtbot, dialog.export(str(nii_path))) == "succeeded" and nii_path.is_file()

    # Exporting over an existing file asks first; "No" keeps the file.
    stamp = nii_path.stat().st_mtime_ns
    assert dialog.export(str(nii_path)) is None
    box = dialog.confirm_box
    assert box is not None and "already exists" in box.text()
    box.button(QMessageBox.StandardButton.No).click()
    QApplication.processEvents()
    assert nii_path.stat().st_mtime_ns == stamp and "kept" in dialog.status.text()
    # Errors are shown clearly, naming the file.
    assert wait_for_job(qtbot, dialog.export(str(tmp_path / "case.xyz"))) == "failed"
    assert dialog.error_box is not None and "failed" in dialog.error_box.text() and "case.xyz" in dialog.error_box.text()
    dialog.error_box.close()

    # Remove everything, then import the .seg.nrrd back: the painted-and-undone state, same names.
    for existing in list(segmentation.segments.labels()):
        editing.editor.delete_segment(existing)
    assert not segmentation.labelmap.array.any()
    job = editing.import_segmentation(seg_path)
    assert wait_for_job(qtbot, job) == "succeeded"
    assert job.applied and all(k == v for k, v in job.applied.items())
    assert np.array_equal(segmentation.labelmap.array, kept)
    assert {s.label: s.name for s in segmentation.segments} == names
    editing.undo_action.trigger()  # an import is one undo step
    assert not segmentation.labelmap.array.any()
    assert wait_for_job(qtbot, editing.import_segmentation(nii_path)) == "succeeded"
    assert np.array_equal(segmentation.labelmap.array, kept)


def test_autosave_after_edit_and_recovery_on_new_window(demo_window, make_window, qtbot, tmp_path):
    editing = demo_window.editing
    view = demo_window.axial_view
    label = demo_window.segment_panel.add_segment("Tumor")
    editing.set_tool("paint")
    centre = centre_pos(view)
    drag(view.vtk_widget, [centre, QPointF(centre.x() + 20, centre.y())])
    QApplication.processEvents()
    assert editing.autosaver is not None
    assert editing.autosaver.flush(10)
    path = editing.autosaver.path
    assert path.is_file() and path.parent == tmp_path / "recovery"
    edited = demo_window.document.segmentation().labelmap.array.copy()
    assert (edited == label).any()
    editing.abandon_autosave()  # as if the program had crashed

    second = make_window()
    qtbot.waitUntil(lambda: second.editing.recovery_box is not None, timeout=3000)
    box = second.editing.recovery_box
    assert "unsaved" in box.text()
    box.recover_button.click()
    qtbot.waitUntil(lambda: second.document.active_volume is not None and not path.exists(), timeout=20_000)
    volume = second.document.active_volume
    recovered = second.document.segmentation(volume)
    assert np.array_equal(recovered.labelmap.array, edited)
    assert recovered.segments[label].name == "Tumor"
    assert second.document.is_modified(volume)  # recovered work is not saved anywhere yet


def test_clean_exit_discards_autosave(make_window):
    window = make_window()
    window.open_demo()
    window.segment_panel.add_segment("Tumor")
    assert window.editing.autosaver is not None
    window.editing.autosaver.flush(10)
    path = window.editing.autosaver.path
    assert path.is_file()
    window.close()
    assert not path.exists()


def test_flood_fill_and_island_pick_by_click(demo_window, qtbot):
    window = demo_window
    editing = window.editing
    view = window.axial_view
    segmentation = window.document.segmentation()
    array = segmentation.labelmap.array
    k = view.slice_index
    source = [s.label for s in segmentation.segments if (array[k] == s.label).any()][-1]
    ys, xs = np.nonzero(array[k] == source)
    target = window.segment_panel.add_segment("Lesion")
    editing.set_tool("flood fill")
    editing.panel.flood_tolerance.setValue(0.0)
    left = Qt.MouseButton.LeftButton
    pos = QPointF(view.voxel_widget_pos(float(xs[len(xs) // 2]), float(ys[len(ys) // 2])))
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonPress, pos, left, left)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonRelease, pos, left)
    filled = int((array == target).sum())
    assert filled > 0 and set(np.unique(np.nonzero(array == target)[0])) == {k}

    # Two separate brush blobs, then a click removes one island.
    editing.set_tool("paint")
    editing.set_brush_radius(3.0)
    centre = centre_pos(view)
    for dx in (-120, 120):
        drag(view.vtk_widget, [QPointF(centre.x() + dx, centre.y() - 60), QPointF(centre.x() + dx + 4, centre.y() - 60)])
    total = int((array == target).sum())
    assert total > filled
    editing.set_tool("islands")
    editing.panel.island_click.setCurrentIndex(editing.panel.island_click.findData("remove"))
    blob = QPointF(centre.x() + 120, centre.y() - 60)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonPress, blob, left, left)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonRelease, blob, left)
    remaining = int((array == target).sum())
    assert filled < remaining < total


def test_menus_and_shortcuts_do_not_clash(demo_window):
    window = demo_window
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles[:2] == ["&File", "&Edit"]
    file_texts = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    for text in ("&Export Segmentation...", "&Import Segmentation...", "&Save Session...", "Open Sessio&n..."):
        assert text in file_texts
    editing = window.editing
    assert [s.toString() for s in editing.redo_action.shortcuts()] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    assert editing.undo_action.shortcut().toString() == "Ctrl+Z"
    seen: dict[str, str] = {}
    for action in window.findChildren(type(editing.undo_action)):
        for shortcut in action.shortcuts():
            key = shortcut.toString()
            if key:
                assert key not in seen or seen[key] == action.text(), (key, seen.get(key), action.text())
                seen[key] = action.text()


def test_save_and_open_session(demo_window, qtbot, tmp_path):
    editing = demo_window.editing
    document = demo_window.document
    segmentation = document.segmentation()
    label = demo_window.segment_panel.add_segment("Tumor")
    volume = document.active_volume
    assert document.is_modified(volume) and demo_window.windowTitle().startswith(f"{volume.info.name}*")
    original = segmentation.labelmap.array.copy()
    job = editing.save_session(tmp_path / "work")
    assert wait_for_job(qtbot, job) == "succeeded"
    path = job.applied
    assert path == tmp_path / "work.mvsession" and path.is_file()
    assert not document.is_modified(volume) and "*" not in demo_window.windowTitle()
    assert segmentation.session_path == str(path)
    first = segmentation.segments.labels()[0]
    editing.editor.delete_segment(first)
    assert not np.array_equal(segmentation.labelmap.array, original)

    # Opening the session over modified labels asks first; Cancel keeps the edit.
    files = editing.files
    job = editing.open_session(path)
    qtbot.waitUntil(lambda: files.unsaved_box is not None, timeout=20_000)
    assert "unsaved changes" in files.unsaved_box.text()
    files.unsaved_box.button(QMessageBox.StandardButton.Cancel).click()
    QApplication.processEvents()
    assert first not in segmentation.segments and document.is_modified(volume)
    # Discard replaces the labels with the session's.
    files.unsaved_policy = "discard"
    job = editing.open_session(path)
    assert wait_for_job(qtbot, job) == "succeeded" and job.applied is volume
    restored = document.segmentation()
    assert np.array_equal(restored.labelmap.array, original)
    assert restored.segments[label].name == "Tumor" and first in restored.segments
    assert not document.is_modified(volume)


def test_brush_outline_follows_the_pointer(demo_window, qtbot):
    editing = demo_window.editing
    view = demo_window.axial_view
    editing.set_tool("paint")
    editing.set_brush_radius(10.0)
    settle(qtbot, demo_window)
    before = view_pixels(demo_window.axial_view)
    centre = centre_pos(view)
    target = QPointF(centre.x() - 100, centre.y() - 100)
    send_mouse(view.vtk_widget, QEvent.Type.MouseMove, target)
    cursor = editing.brush_view_tool.cursors[id(view)]
    assert cursor.visible
    settle(qtbot, demo_window, 60)
    after = view_pixels(demo_window.axial_view)
    changed = np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 60
    ys, xs = np.nonzero(changed)
    assert ys.size > 20
    # The outline is a ring around the pointer: nothing changes at its centre.
    ratio = view.vtk_widget.devicePixelRatioF() or 1.0
    cx, cy = target.x() * ratio, target.y() * ratio
    distances = np.hypot(xs - cx, ys - cy)
    assert distances.min() > 0.5 * distances.max() > 5
    editing.set_tool("")
    assert not cursor.visible
