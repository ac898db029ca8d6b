"""The document's unsaved-changes flag and cancellable session saves (headless)."""

import numpy as np
import pytest

from medviewer.io.images import write_volume
from medviewer.io.session import capture_session, load_session, open_session, save_session
from medviewer.jobs import JobCancelled, JobControl
from medviewer.model import Box, Document, Geometry, SegmentEditor, Volume


def make_volume(name: str = "scan") -> Volume:
    geometry = Geometry((4, 10, 12), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    volume = Volume(np.zeros((4, 10, 12), np.int16), geometry)
    volume.info.name = name
    return volume


@pytest.fixture
def document():
    document = Document()
    document.add_volume(make_volume())
    return document


def test_edits_mark_modified_and_saving_a_revision_clears_it(document):
    volume = document.active_volume
    events = []
    document.modified_changed.connect(lambda v, modified: events.append((v, modified)))
    assert not document.is_modified() and not document.is_modified(volume)
    editor = SegmentEditor.for_document(document)
    label = editor.create_segment("liver").label
    assert document.is_modified(volume) and document.modified_volumes() == [volume]
    snapshot = document.revision(volume)
    editor.apply(np.ones((1, 2, 2), bool), Box((0, 0, 0), (1, 2, 2)), label=label, tool="brush")
    assert events == [(volume, True)]  # reported once, when it became modified
    document.mark_saved(volume, snapshot, "/tmp/case.mvsession")  # the save held the state before the paint
    assert document.is_modified(volume) and document.segmentation(volume).session_path == "/tmp/case.mvsession"
    document.mark_saved(volume)
    assert not document.is_modified(volume) and events[-1] == (volume, False)
    editor.undo()  # undoing is a change too (the file holds the painted state)
    assert document.is_modified(volume)


def test_each_volume_has_its_own_flag_and_closed_volumes_are_ignored(document):
    first = document.active_volume
    second = document.add_volume(make_volume("second"))
    SegmentEditor.for_document(document, second).create_segment("tumor")
    assert document.modified_volumes() == [second] and not document.is_modified(first)
    document.remove_volume(second)
    assert not document.is_modified()
    document.mark_saved(second)  # a save finishing after its volume closed changes nothing
    assert not document.is_modified()


def test_set_labels_counts_as_a_change(document):
    volume = document.active_volume
    from medviewer.model import LabelMap

    array = np.zeros(volume.shape, np.uint8)
    array[1, 2:4, 2:4] = 3
    document.set_labels(volume, LabelMap(volume.geometry, array))
    assert document.is_modified(volume)


def test_cancelled_session_save_writes_nothing(document, tmp_path):
    volume = document.active_volume
    volume.info.source = str(write_volume(tmp_path / "scan.nrrd", volume))
    seg = document.segmentation(volume)
    SegmentEditor.for_document(document).create_segment("liver")
    state = capture_session(volume, seg.labelmap, seg.segments)
    control = JobControl()
    control.cancel()
    with pytest.raises(JobCancelled):
        save_session(tmp_path / "case", state, control=control)
    assert not (tmp_path / "case.mvsession").exists()
    progress = []
    written = save_session(tmp_path / "case", state, control=JobControl(lambda *args: progress.append(args)))
    assert written == tmp_path / "case.mvsession" and [p[:2] for p in progress] == [(0, 2), (1, 2)]
    # open_session reuses a session already read instead of reading it again.
    loaded = load_session(written)
    reopened, same = open_session(written, state=loaded)
    assert same is loaded and reopened.geometry.same_grid(volume.geometry)
