"""AI prompting in the real main window: LiteMedSAM on a real CT slice, accept/undo, propagation
cancel, and a failing model that must not take the app down."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication

from medviewer.ai import Engine, ModelInfo, ModelRegistry, PromptKind
from medviewer.model import Document
from medviewer.ui.main_window import MainWindow

from fake_models import BoxFillModel
from gui_support import isolated_settings, send_mouse, view_pixels  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000
# The vertebral body of pydicom's CT_small.dcm (128 x 128): columns 41-78, rows 5-41.
VERTEBRA_BOX = (40, 4, 80, 44)


# -- fake models --------------------------------------------------------------------------------
class FailingModel(BoxFillModel):
    info = ModelInfo(id="test-failing", name="Failing (test)", version="0", prompts=frozenset({PromptKind.BOX}))

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        raise RuntimeError("decoder exploded on purpose")


class SlowDecodeModel(BoxFillModel):
    info = ModelInfo(id="test-slow-decode", name="Slow decoder (test)", version="0", prompts=frozenset({PromptKind.BOX}))

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        time.sleep(0.6)
        return super().decode(embedding, prompt, previous_low_res_mask, control=control)


# -- helpers ------------------------------------------------------------------------------------
def yellow_pixels(pixels: np.ndarray) -> int:
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 200) & (g > 190) & (b < 90)))


def drag_box(view, box) -> None:
    """A real left drag from one voxel corner of ``box`` (x0, y0, x1, y1) to the other."""
    widget = view.vtk_widget
    start = view.voxel_widget_pos(box[0], box[1])
    end = view.voxel_widget_pos(box[2], box[3])
    left = Qt.MouseButton.LeftButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, left, left)
    middle = QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2)
    send_mouse(widget, QEvent.Type.MouseMove, middle, Qt.MouseButton.NoButton, left)
    send_mouse(widget, QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, left)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, left, Qt.MouseButton.NoButton)


def wait_until(qtbot, condition, timeout=TIMEOUT_MS):
    qtbot.waitUntil(condition, timeout=timeout)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    registry.register(BoxFillModel)
    registry.register(FailingModel)
    registry.register(SlowDecodeModel)
    engine = Engine(registry, device="cpu")
    engine.load_model("litemedsam").get(120)
    yield engine
    engine.shutdown()


@pytest.fixture
def window(qtbot, isolated_settings, engine):
    window = MainWindow(Document(), settings=isolated_settings)
    window.ai_controller.set_engine(engine, owned=False)
    qtbot.addWidget(window)
    window.resize(1240, 940)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del window
    gc.collect()


@pytest.fixture
def ct_window(window, qtbot):
    pydicom_data = pytest.importorskip("pydicom.data")
    path = pydicom_data.get_testdata_file("CT_small.dcm")
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS):
        window.open_path(path)
    QApplication.processEvents()
    window.render_all()
    return window


# -- tests --------------------------------------------------------------------------------------
def test_panel_lists_models_and_card(window):
    panel = window.ai_panel
    texts = dict(panel.model_texts())
    assert any(t.startswith("LiteMedSAM") for t in texts)
    assert any(t.startswith("Failing (test)") for t in texts)
    card = panel.card.text()
    assert "LiteMedSAM" in card and "SHA-256" in card and "License" in card
    assert not panel.point_mode.isEnabled()  # LiteMedSAM takes boxes only
    window.ai_controller.registry.mark_failed("test-failing", "weights are corrupt")
    panel.refresh_models()
    failed = [(t, enabled) for t, enabled in panel.model_texts() if t.startswith("Failing")]
    assert failed == [("Failing (test) — failed to load: weights are corrupt", False)]
    window.ai_controller.registry.get("test-failing").error = None


def test_litemedsam_box_candidate_accept_provenance_and_undo(ct_window, qtbot):
    window = ct_window
    controller = window.ai_controller
    view = window.axial_view
    volume = window.document.active_volume
    labels = window.document.segmentation(volume).labelmap
    assert labels.array.max() == 0
    controller.set_active(True)
    assert view.view_tool is controller.tool
    wait_until(qtbot, lambda: controller.state == "ready")
    before = yellow_pixels(view_pixels(view))
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        drag_box(view, VERTEBRA_BOX)
    candidate = controller.candidate
    assert candidate is not None and candidate.model_id == "litemedsam"
    area = int(candidate.mask.sum())
    assert 400 < area < 1600, area
    rows, cols = np.nonzero(candidate.mask)
    assert 30 < cols.mean() < 90 and rows.mean() < 45
    assert "Predicted quality" in window.ai_panel.score_label.text()
    QApplication.processEvents()
    after = yellow_pixels(view_pixels(view))
    if os.environ.get("MEDVIEWER_AI_SCREENSHOT"):
        view.grab_view().save(os.environ["MEDVIEWER_AI_SCREENSHOT"])
    assert after > before + 50, (before, after)
    # A click is refused with a message: LiteMedSAM takes boxes only.
    controller.add_point(view, volume.geometry.index_to_physical((60, 20, 0)))
    assert "box" in window.ai_panel.message_label.text()
    # Enter accepts into a new segment with provenance.
    view.vtk_widget.setFocus()
    qtbot.keyClick(view.vtk_widget, Qt.Key.Key_Return)
    assert controller.candidate is None
    assert int(np.count_nonzero(labels.array)) == area
    segments = window.document.segmentation(volume).segments
    label = int(labels.array.max())
    ai_entries = [e for e in segments.get(label).provenance if e.kind == "ai"]
    assert ai_entries, segments.get(label).provenance
    details = ai_entries[-1].details
    assert details["model"]["model_id"] == "litemedsam"
    assert details["model"]["checkpoint_sha256"]
    prompt = details["prompts"][0]
    assert prompt["coordinates"] == "LPS mm" and len(prompt["box_corners"]) == 2
    expected = volume.geometry.index_to_physical(VERTEBRA_BOX[:2] + (0,))
    assert np.allclose(prompt["box_corners"][0], expected, atol=volume.geometry.spacing[0] * 1.01)
    # Ctrl+Z removes it.
    QApplication.processEvents()  # the Undo action is enabled through a queued history event
    undo = window.editing.undo_action
    assert undo.isEnabled() and undo.shortcut().matches(QKeySequence("Ctrl+Z")) == QKeySequence.SequenceMatch.ExactMatch
    undo.trigger()  # (Xvfb has no window manager to make the window active for shortcuts)
    assert int(np.count_nonzero(labels.array)) == 0
    controller.set_active(False)
    assert view.view_tool is None


def test_prompt_marks_are_drawn_with_the_candidate_or_alone_when_it_is_slow(ct_window, qtbot):
    """A render while the decoder runs would slow it down: the box waits for the candidate,
    but never longer than PROMPT_PAINT_DELAY_MS."""
    from medviewer.ui.ai_tools import PROMPT_PAINT_DELAY_MS

    window, controller, view = ct_window, ct_window.ai_controller, ct_window.axial_view
    renders: list[float] = []
    tag = view.render_window.AddObserver("EndEvent", lambda *_: renders.append(time.perf_counter()))
    try:
        for model_id, slow in (("test-boxfill", False), ("test-slow-decode", True)):
            controller.set_model(model_id)
            controller.set_active(True)
            wait_until(qtbot, lambda: controller.state == "ready")
            controller.engine.encode(model_id, window.document.active_volume, 0, 0).get(30)
            qtbot.wait(300)  # let every pending repaint happen first
            renders.clear()
            arrived: list[float] = []

            def on_candidate(candidate, arrived=arrived):
                if candidate is not None:
                    arrived.append(time.perf_counter())  # after its frame was rendered

            controller.candidate_changed.connect(on_candidate)
            start = time.perf_counter()
            with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
                controller.set_box_pixels(view, VERTEBRA_BOX)
            frames = [round(t - start, 3) for t in renders if t <= arrived[0]]
            if slow:  # the box alone after the delay, then the candidate
                assert len(frames) >= 2 and PROMPT_PAINT_DELAY_MS / 1000 * 0.9 <= frames[0] < frames[-1], frames
            else:  # one frame: the box and the candidate together
                assert len(frames) == 1, frames
            assert controller._overlays[view].segment_count > 4  # the box's 4 lines and the contour
            controller.candidate_changed.disconnect(on_candidate)
            controller.clear_prompts()
    finally:
        view.render_window.RemoveObserver(tag)


def test_failing_model_shows_error_and_app_keeps_running(ct_window, qtbot):
    window = ct_window
    controller = window.ai_controller
    view = window.axial_view
    controller.set_model("test-failing")
    controller.set_active(True)
    with qtbot.waitSignal(controller.message, timeout=TIMEOUT_MS, check_params_cb=lambda text, error: error):
        drag_box(view, VERTEBRA_BOX)
    assert "decoder exploded" in window.ai_panel.message_label.text()
    assert "decoder exploded" in window.statusBar().currentMessage()
    assert controller.candidate is None
    # Still alive: another model works right after.
    controller.set_model("test-boxfill")
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        drag_box(view, VERTEBRA_BOX)
    assert controller.candidate.mask.sum() > 100
    assert window.isVisible()


def test_propagation_cancel_writes_nothing_then_completes_as_one_undo(window, qtbot):
    window.open_demo()
    QApplication.processEvents()
    controller = window.ai_controller
    view = window.axial_view
    volume = window.document.active_volume
    labels = window.document.segmentation(volume).labelmap
    controller.set_model("test-boxfill")
    controller.set_active(True)
    k = view.slice_index
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        controller.set_box_pixels(view, (4, 4, 14, 14))
    original = labels.array.copy()
    BoxFillModel.delay = 0.2
    try:
        controller.propagate()
        assert window.ai_panel.cancel_button.isEnabled() and window.ai_panel.progress.isVisible()
        with qtbot.waitSignal(controller.propagation_running, timeout=TIMEOUT_MS, check_params_cb=lambda r: not r):
            qtbot.wait(300)
            window.ai_panel.cancel_button.click()
        assert "cancelled" in window.ai_panel.message_label.text()
        assert np.array_equal(labels.array, original)
        assert not window.ai_panel.progress.isVisible()
    finally:
        BoxFillModel.delay = 0.0
    from medviewer.ai.propagation import PropagationSettings

    with qtbot.waitSignal(controller.propagation_running, timeout=TIMEOUT_MS, check_params_cb=lambda running: not running):
        assert controller.propagate(PropagationSettings(max_intensity_shift=None))
    assert "propagated" in window.ai_panel.message_label.text(), window.ai_panel.message_label.text()
    changed = np.argwhere(labels.array != original)
    assert len(np.unique(changed[:, 0])) > 3 and k in set(changed[:, 0])
    window.editing.undo_action.trigger()
    assert np.array_equal(labels.array, original)


def test_choose_checkpoint_is_remembered_and_a_bad_file_is_an_error(window, qtbot, isolated_settings, tmp_path):
    controller = window.ai_controller
    panel = window.ai_panel
    bad = tmp_path / "medsam_vit_b.pth"
    bad.write_bytes(b"not a checkpoint")
    row = [i for i, (t, _) in enumerate(panel.model_texts()) if t.startswith("MedSAM")][0]
    panel.model_combo.setCurrentIndex(row)
    assert controller.model_id == "medsam"
    with qtbot.waitSignal(controller.message, timeout=TIMEOUT_MS, check_params_cb=lambda text, error: error):
        panel.choose_checkpoint(str(bad))
    assert isolated_settings.value("ai/checkpoint/medsam") == str(bad)
    assert panel.message_label.text() and controller.state == "error"
    assert str(bad) in panel.card.text()
    # A new window remembers the file for that model.
    panel.model_combo.setCurrentIndex(0)
    controller.checkpoints.clear()
    panel.model_combo.setCurrentIndex(row)
    assert controller.checkpoints["medsam"] == str(bad)
    assert window.isVisible()


@pytest.mark.parametrize("pane", ["coronal", "sagittal"])
def test_prompts_on_coronal_and_sagittal_views_map_to_the_right_voxels(window, qtbot, pane):
    window.open_demo()
    QApplication.processEvents()
    controller = window.ai_controller
    view = window.slice_views[pane]
    volume = window.document.active_volume
    labels = window.document.segmentation(volume).labelmap
    from medviewer.ui.ai_tools import view_slice

    axis, index = view_slice(view)
    assert axis == {"coronal": 1, "sagittal": 2}[pane]
    controller.set_model("test-boxfill")
    controller.set_active(True)
    before = labels.array.copy()
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        controller.set_box_pixels(view, (5, 3, 12, 8))
    assert controller.accept()
    changed = np.argwhere(labels.array != before)  # (z, y, x)
    assert len(changed)
    assert set(changed[:, axis]) == {index}
    in_plane = [a for a in (0, 1, 2) if a != axis]  # rows = z (axis 0), columns = the other axis
    rows, cols = changed[:, in_plane[0]], changed[:, in_plane[1]]
    assert rows.min() >= 3 and rows.max() <= 8 and cols.min() >= 5 and cols.max() <= 12
