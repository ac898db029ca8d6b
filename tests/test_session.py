"""Sessions in one file, background autosave, and recovery after a crash."""

import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from medviewer.io.errors import MedViewerIOError
from medviewer.io.images import write_volume
from medviewer.io.session import (
    Autosaver,
    capture_session,
    default_recovery_dir,
    discard_recovery,
    find_recoverable_sessions,
    load_session,
    open_session,
    restore_session,
    save_session,
)
from medviewer.model import Box, Document, Geometry, ModelProvenance, SegmentEditor, Volume


@pytest.fixture
def workspace(tmp_path):
    geometry = Geometry((5, 16, 20), (0.8, 0.8, 2.0), (1.0, 2.0, 3.0))
    volume = Volume(np.arange(5 * 16 * 20, dtype=np.int16).reshape(5, 16, 20), geometry)
    scan = write_volume(tmp_path / "scan.nrrd", volume)
    volume.info.source = str(scan)
    document = Document()
    document.add_volume(volume)
    editor = SegmentEditor.for_document(document)
    editor.create_segment("liver")
    editor.create_segment("tumor")
    editor.apply(np.ones((2, 4, 4), bool), Box((1, 2, 3), (3, 6, 7)), label=1, tool="brush")
    editor.accept_ai_result(np.ones((1, 3, 3), bool), Box((4, 0, 0), (5, 3, 3)), label=2,
                            model=ModelProvenance("m", "Model", "1", "ef" * 32))
    editor.set_locked(2, True)
    editor.move_segment(2, 0)
    return document, volume, editor


def test_session_round_trip_keeps_everything(tmp_path, workspace):
    document, volume, editor = workspace
    seg = document.segmentation(volume)
    state = capture_session(volume, seg.labelmap, seg.segments, active_label=1, view_state={"slice": [2, 8, 10], "zoom": 1.5})
    path = save_session(tmp_path / "work", state)
    assert path.name == "work.mvsession"
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["segmentation.seg.nrrd", "session.json"]
    back = load_session(path)
    np.testing.assert_array_equal(back.labels, seg.labelmap.array)
    assert back.geometry.same_grid(volume.geometry)
    assert [(s.label, s.name, s.color, s.locked) for s in back.segments] == [
        (s.label, s.name, s.color, s.locked) for s in seg.segments]
    assert back.segments[0].provenance[-1].details["model"]["checkpoint_sha256"] == "ef" * 32
    assert back.view_state == {"slice": [2, 8, 10], "zoom": 1.5} and back.active_label == 1
    reopened_volume, reopened = open_session(path)
    fresh = Document()
    fresh.add_volume(reopened_volume)
    restored = restore_session(fresh, reopened_volume, reopened)
    np.testing.assert_array_equal(restored.labelmap.array, seg.labelmap.array)
    assert restored.segments.labels() == [2, 1] and restored.segments[2].locked


def test_capture_is_a_snapshot(workspace):
    document, volume, editor = workspace
    seg = document.segmentation(volume)
    state = capture_session(volume, seg.labelmap, seg.segments)
    editor.set_locked(2, False)
    editor.apply(np.ones((1, 1, 1), bool), Box((0, 0, 0), (1, 1, 1)), label=2)
    assert state.labels[0, 0, 0] == 0 and len(state.segments[0].provenance) == 2


def test_open_session_reports_missing_or_changed_scan(tmp_path, workspace):
    document, volume, editor = workspace
    seg = document.segmentation(volume)
    path = save_session(tmp_path / "s.mvsession", capture_session(volume, seg.labelmap, seg.segments))
    (tmp_path / "scan.nrrd").unlink()
    with pytest.raises(MedViewerIOError, match="missing"):
        open_session(path)
    write_volume(tmp_path / "other.nrrd", Volume(np.zeros((5, 16, 21), np.int16)))
    with pytest.raises(MedViewerIOError, match="no longer matches"):
        open_session(path, scan_path=tmp_path / "other.nrrd")


def test_autosaver_writes_in_background_after_edits(tmp_path, workspace):
    document, volume, editor = workspace
    seg = document.segmentation(volume)
    saver = Autosaver(lambda: capture_session(volume, seg.labelmap, seg.segments), folder=tmp_path / "recovery")
    seg.history.changed.connect(saver.edit_committed)
    for k in range(5):
        editor.apply(np.ones((1, 2, 2), bool), Box((k, 10, 10), (k + 1, 12, 12)), label=1)
    assert saver.flush(30)
    assert 1 <= saver.saves_completed <= 5 and saver.last_error is None
    saved = load_session(saver.path)
    np.testing.assert_array_equal(saved.labels, seg.labelmap.array)  # the newest edit is on disk
    assert find_recoverable_sessions(tmp_path / "recovery") == []  # our own, still running
    assert len(find_recoverable_sessions(tmp_path / "recovery", include_running=True)) == 1
    saver.discard()
    assert not saver.path.exists()


def test_autosaver_timer_saves_pending_changes(tmp_path, workspace):
    document, volume, editor = workspace
    seg = document.segmentation(volume)
    saver = Autosaver(lambda: capture_session(volume, seg.labelmap, seg.segments), folder=tmp_path,
                      every_edits=100, every_seconds=0.0)
    saver.tick()  # nothing changed yet
    saver.flush()
    assert saver.saves_completed == 0
    saver.edit_committed()
    saver.tick()
    saver.flush()
    assert saver.saves_completed == 1
    saver.close()


def test_crashed_program_leaves_a_recoverable_session(tmp_path):
    script = textwrap.dedent(f"""
        import os, numpy as np
        from medviewer.model import Geometry, LabelMap, SegmentEditor, SegmentTable, Volume, Box
        from medviewer.io.session import Autosaver, capture_session
        geometry = Geometry((3, 8, 8))
        volume = Volume(np.zeros((3, 8, 8), np.int16), geometry)
        volume.info.source = "/data/ct.nrrd"
        volume.info.name = "ct"
        editor = SegmentEditor(LabelMap(geometry), SegmentTable(), volume)
        saver = Autosaver(lambda: capture_session(volume, editor.labelmap, editor.segments, edit_count=editor.history.undo_count),
                          folder={str(tmp_path)!r})
        editor.history.changed.connect(saver.edit_committed)
        editor.create_segment("liver")
        editor.apply(np.ones((1, 2, 2), bool), Box((1, 1, 1), (2, 3, 3)))
        saver.flush()
        os._exit(3)  # killed: no discard()
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 3, completed.stderr
    found = find_recoverable_sessions(tmp_path)
    assert len(found) == 1
    session = found[0]
    assert session.scan_source == "/data/ct.nrrd" and session.scan_name == "ct" and session.segments == 1
    assert session.edit_count == 2
    state = load_session(session.path)
    assert state.labels.sum() == 4
    discard_recovery(session)
    assert find_recoverable_sessions(tmp_path) == []


def test_recovery_folder_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDVIEWER_RECOVERY_DIR", str(tmp_path / "rec"))
    assert default_recovery_dir() == tmp_path / "rec"
    monkeypatch.delenv("MEDVIEWER_RECOVERY_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_recovery_dir() == tmp_path / "xdg" / "medviewer" / "recovery"
