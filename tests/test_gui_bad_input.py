"""Opening bad files in the window: an error naming the file, and the open work untouched."""

from __future__ import annotations

import numpy as np

from bad_input_corpus import CORPUS
from gui_support import demo_window, isolated_settings, settle, window  # noqa: F401  (fixtures)

ENTRIES = {entry.name: entry for entry in CORPUS}


def _expect_failure(window, qtbot, start) -> str:
    with qtbot.waitSignal(window.load_failed, timeout=15000) as blocker:
        start()
    if window.last_message_box is not None:
        window.last_message_box.close()
    return blocker.args[0]


def test_bad_files_keep_the_open_volume_and_its_segmentation(demo_window, qtbot, tmp_path):
    volume = demo_window.document.active_volume
    segmentation = demo_window.document.segmentation(volume)
    labels_before = segmentation.labelmap.array.copy()
    segments_before = [s.name for s in segmentation.segments]
    assert labels_before.any()
    for name in ("lying_nifti", "truncated_nifti", "dicomdir_only", "empty_folder", "corrupt_dicom_header"):
        (tmp_path / name).mkdir()
        path = ENTRIES[name].build(tmp_path / name)
        message = _expect_failure(demo_window, qtbot, lambda: demo_window.open_path(path))
        assert path.name in message, message
        assert demo_window.document.active_volume is volume
    path = ENTRIES["labels_on_other_grid"].build(tmp_path)
    message = _expect_failure(demo_window, qtbot, lambda: demo_window.load_labels(path))
    assert path.name in message and "different grid" in message
    assert demo_window.document.volumes == [volume]
    assert demo_window.document.segmentation(volume) is segmentation
    np.testing.assert_array_equal(segmentation.labelmap.array, labels_before)
    assert [s.name for s in segmentation.segments] == segments_before
    assert not demo_window.is_busy
    settle(qtbot, demo_window)


def test_colour_picture_opens_with_the_luminance_warning_in_the_status_bar(window, qtbot, tmp_path):
    path = ENTRIES["rgb_png"].build(tmp_path)
    with qtbot.waitSignal(window.volume_loaded, timeout=15000):
        window.open_path(path)
    assert "luminance" in window.statusBar().currentMessage()


def test_export_dialog_deidentify_checkbox_reaches_the_writer(demo_window, qtbot, tmp_path):
    import json

    from gui_support import wait_for_job

    dialog = demo_window.editing.show_export_dialog()
    dialog.set_format("json")
    assert not dialog.deidentify_check.isChecked()
    plain = tmp_path / "plain.json"
    assert wait_for_job(qtbot, dialog.export(str(plain))) == "succeeded"
    assert "deidentified" not in json.loads(plain.read_text())
    dialog.deidentify_check.setChecked(True)
    anon = tmp_path / "anon.json"
    assert wait_for_job(qtbot, dialog.export(str(anon))) == "succeeded"
    document = json.loads(anon.read_text())
    assert document["deidentified"] is True
    assert document["scan"]["name"].startswith("redacted-")
    dialog.close()
