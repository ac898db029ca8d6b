"""File work off the GUI thread and the unsaved-changes flag, in the real main window under Xvfb.

Slow writes are simulated by holding the worker on a threading.Event, so the tests can edit,
cancel or close while a job is really running.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

import medviewer.export.formats as export_formats
import medviewer.io.session as session_io
from medviewer.io.session import load_session

from gui_support import demo_window, isolated_settings, wait_for_job, window  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def recovery_dir(tmp_path, monkeypatch):
    folder = tmp_path / "recovery"
    monkeypatch.setenv("MEDVIEWER_RECOVERY_DIR", str(folder))
    return folder


@pytest.fixture
def held_session_writes(monkeypatch):
    """Session saves wait for ``release.set()`` before writing (at most 10 s)."""
    release = threading.Event()
    started = threading.Event()
    real_save = session_io.save_session

    def held(path, state, *args, **kwargs):
        if Path(path).parent.name != "recovery":  # autosaves go through unheld
            started.set()
            release.wait(10)
        return real_save(path, state, *args, **kwargs)

    monkeypatch.setattr(session_io, "save_session", held)
    return started, release


@pytest.fixture
def endless_export(monkeypatch):
    """An export that runs until cancelled (checks its JobControl like the real writers do)."""
    started = threading.Event()

    def endless(path, *args, control=None, **kwargs):
        started.set()
        for _ in range(1000):
            control.report(0, 0, "writing")  # raises JobCancelled once cancelled
            threading.Event().wait(0.01)
        raise AssertionError("the export was never cancelled")

    monkeypatch.setattr(export_formats, "export_segmentation", endless)
    return started


def edit(window) -> int:
    """One undoable edit of the shown segmentation: a new segment painted on one voxel row."""
    label = window.segment_panel.add_segment("Lesion")
    window.editing.editor.labelmap.array[0, 0, :4] = label
    window.editing.editor.labelmap.notify()
    return label


def test_title_star_follows_edits_and_session_saves(demo_window, qtbot, tmp_path):
    window = demo_window
    document = window.document
    volume = document.active_volume
    assert not document.is_modified(volume) and "*" not in window.windowTitle()  # a fresh demo is clean
    edit(window)
    assert document.is_modified(volume) and window.windowTitle().startswith(f"{volume.info.name}*")
    # Exports are not a save: the flag stays.
    job = window.editing.export(tmp_path / "labels.nii.gz")
    assert wait_for_job(qtbot, job) == "succeeded" and (tmp_path / "labels.nii.gz").is_file()
    assert document.is_modified(volume)
    assert wait_for_job(qtbot, window.editing.save_session(tmp_path / "case")) == "succeeded"
    assert not document.is_modified(volume) and "*" not in window.windowTitle()


def test_edits_during_a_save_keep_the_document_modified(demo_window, qtbot, tmp_path, held_session_writes):
    started, release = held_session_writes
    window = demo_window
    document = window.document
    volume = document.active_volume
    edit(window)
    job = window.editing.save_session(tmp_path / "case")
    assert job is not None and started.wait(10)
    assert window.editing.files.progress_bar.isVisible()
    later = window.segment_panel.add_segment("Added during the save")  # the GUI is not blocked
    release.set()
    assert wait_for_job(qtbot, job) == "succeeded"
    assert document.is_modified(volume) and window.windowTitle().startswith(f"{volume.info.name}*")
    saved = load_session(job.applied)
    assert later not in [s.label for s in saved.segments]  # the file holds the snapshot, not the later edit
    assert not window.editing.files.progress_bar.isVisible()


def test_failed_save_and_import_report_the_file_and_change_nothing(demo_window, qtbot, tmp_path):
    window = demo_window
    document = window.document
    volume = document.active_volume
    edit(window)
    missing = tmp_path / "no such folder" / "case.mvsession"
    assert wait_for_job(qtbot, window.editing.save_session(missing)) == "failed"
    box = window.last_message_box
    assert box is not None and "case.mvsession" in box.text() and "folder" in box.text()
    box.close()
    assert document.is_modified(volume) and not missing.parent.exists()

    corrupt = tmp_path / "broken.seg.nrrd"
    corrupt.write_bytes(b"NRRD0004\nthis is not a segmentation\n")
    segmentation = document.segmentation(volume)
    before = segmentation.labelmap.array.copy()
    undo_count = segmentation.history.undo_count
    assert wait_for_job(qtbot, window.editing.import_segmentation(corrupt)) == "failed"
    box = window.last_message_box
    assert box is not None and "broken.seg.nrrd" in box.text()
    box.close()
    assert np.array_equal(segmentation.labelmap.array, before) and segmentation.history.undo_count == undo_count


def test_cancel_button_stops_an_export_and_leaves_no_file(demo_window, qtbot, tmp_path, endless_export):
    files = demo_window.editing.files
    target = tmp_path / "meshes.stl"
    job = demo_window.editing.export(target)
    assert endless_export.wait(10)
    qtbot.waitUntil(files.cancel_button.isVisible, timeout=3000)
    files.cancel_button.click()
    assert wait_for_job(qtbot, job) == "cancelled"
    assert not any(p.name.startswith("meshes") for p in tmp_path.iterdir())
    assert not files.busy and not files.cancel_button.isVisible()


def test_quit_with_unsaved_changes_cancel_keeps_everything(demo_window, qtbot, recovery_dir):
    window = demo_window
    edit(window)
    autosave = window.editing.autosaver.path
    assert window.editing.autosaver.flush(10) and autosave.is_file()
    files = window.editing.files
    window.quit_action.trigger()
    box = files.unsaved_box
    assert box is not None and window.isVisible()
    assert "unsaved changes" in box.text() and "do not count as saved" in box.informativeText()
    box.button(QMessageBox.StandardButton.Cancel).click()
    QApplication.processEvents()
    assert window.isVisible() and autosave.is_file() and window.document.is_modified()


def test_quit_with_unsaved_changes_discard_closes_and_drops_the_autosave(demo_window, qtbot):
    window = demo_window
    edit(window)
    autosave = window.editing.autosaver.path
    assert window.editing.autosaver.flush(10) and autosave.is_file()
    window.quit_action.trigger()
    window.editing.files.unsaved_box.button(QMessageBox.StandardButton.Discard).click()
    QApplication.processEvents()
    assert not window.isVisible() and not autosave.exists()


def test_quit_with_unsaved_changes_save_writes_the_session_then_closes(demo_window, qtbot, tmp_path, monkeypatch):
    window = demo_window
    label = edit(window)
    files = window.editing.files
    asked = []
    monkeypatch.setattr(files, "ask_session_path", lambda volume: asked.append(volume) or str(tmp_path / "work"))
    files.unsaved_policy = "save"
    assert not window.request_close()  # stays open until the session is written
    assert asked == [window.document.active_volume]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
    state = load_session(tmp_path / "work.mvsession")
    assert label in [s.label for s in state.segments] and (state.labels == label).any()


def test_closing_volume_asks_and_a_clean_document_does_not(demo_window, qtbot):
    window = demo_window
    files = window.editing.files
    files.unsaved_policy = "cancel"
    edit(window)
    volume = window.document.active_volume
    window.close_volume_action.trigger()
    assert window.document.volumes == [volume] and "unsaved" in files.last_question
    files.unsaved_policy = "discard"
    window.close_volume_action.trigger()
    assert window.document.volumes == [] and window.windowTitle() == "medviewer"
    files.unsaved_policy = None
    window.open_demo()
    window.close_volume_action.trigger()  # nothing to lose: no question
    assert window.document.volumes == [] and files.unsaved_box is None


def test_closing_the_window_waits_for_a_running_save(demo_window, qtbot, tmp_path, held_session_writes):
    started, release = held_session_writes
    window = demo_window
    label = edit(window)
    job = window.editing.save_session(tmp_path / "case")
    assert started.wait(10)
    threading.Timer(0.3, release.set).start()  # the write goes on while the window closes
    window.close()
    assert not window.isVisible()
    state = load_session(tmp_path / "case.mvsession")  # complete, not half-written
    assert label in [s.label for s in state.segments]
    assert job.outcome in ("", "succeeded")  # its signals were dropped with the window


def test_closing_the_window_cancels_a_running_export(demo_window, qtbot, tmp_path, endless_export):
    window = demo_window
    target = tmp_path / "labels.nii.gz"
    window.editing.export(target)
    assert endless_export.wait(10)
    window.close()
    assert not window.isVisible() and not any(p.name.startswith("labels") for p in tmp_path.iterdir())
    QApplication.processEvents()  # the job's queued outcome must not reach the closed window


def test_multi_file_export_asks_before_replacing_files_it_finds(demo_window, qtbot, tmp_path, monkeypatch):
    """Mesh exports write one file per segment: the worker finds an existing one, the dialog asks."""
    from medviewer.export.formats import ExportResult
    from medviewer.io.errors import OutputExistsError

    existing = tmp_path / "mesh_1_liver.stl"
    existing.write_text("old")
    calls = []

    def export(path, *args, overwrite=False, **kwargs):
        calls.append(overwrite)
        if existing.exists() and not overwrite:
            raise OutputExistsError("the file already exists", existing)
        existing.write_text("new")
        return ExportResult([existing])

    monkeypatch.setattr(export_formats, "export_segmentation", export)
    dialog = demo_window.editing.show_export_dialog()
    dialog.set_format("stl")
    assert wait_for_job(qtbot, dialog.export(str(tmp_path / "mesh.stl"))) == "failed"
    box = dialog.confirm_box
    assert box is not None and "mesh_1_liver.stl" in box.text() and dialog.error_box is None
    box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: dialog.last_result is not None, timeout=10_000)
    assert calls == [False, True] and existing.read_text() == "new"
    dialog.close()


def test_session_of_a_closed_scan_opens_with_its_scan_in_the_background(window, qtbot, tmp_path):
    from medviewer.io.images import write_volume
    from medviewer.model import Geometry, Volume

    array = np.arange(4 * 20 * 24, dtype=np.int16).reshape(4, 20, 24)
    scan = write_volume(tmp_path / "scan.nrrd", Volume(array, Geometry(array.shape, (1.0, 1.0, 2.5), (5.0, 0.0, 0.0))))
    with qtbot.waitSignal(window.volume_loaded, timeout=20_000):
        window.open_path(scan)
    label = edit(window)
    edited = window.document.segmentation().labelmap.array.copy()
    job = window.editing.save_session(tmp_path / "scan")
    assert wait_for_job(qtbot, job) == "succeeded"
    window.close_active_volume()  # saved: closes without a question
    assert window.document.volumes == [] and window.editing.files.unsaved_box is None

    job = window.editing.open_session(job.applied)
    assert wait_for_job(qtbot, job) == "succeeded"
    volume = window.document.active_volume
    assert job.applied is volume and volume.info.source == str(scan)
    segmentation = window.document.segmentation(volume)
    assert np.array_equal(segmentation.labelmap.array, edited) and segmentation.segments[label].name == "Lesion"
    assert not window.document.is_modified(volume) and "*" not in window.windowTitle()
