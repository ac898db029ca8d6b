"""3D AI tools in the main window: the 3D-box tool (a box on the first and on the last slice)
with Cancel / Stop here, Stop here for propagation, 3D clicks for SAM-Med3D (random weights)
and region growing, and the low-res mask fed back when 2D clicks refine a result."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtWidgets import QApplication

from medviewer.ai import (
    Engine,
    ModelInfo,
    ModelRegistry,
    Prediction,
    Prompt3D,
    PromptKind,
)
from medviewer.ai.propagation import PropagationSettings

from fake_models import BoxFillModel
from gui_support import demo_window, drag, isolated_settings, send_mouse, settle, window  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000
LOW_RES = 8  # side of the fake models' low-res logits


# -- fake 2D models -----------------------------------------------------------------------------------
class SlowBoxFill(BoxFillModel):
    """Fills the prompt box; ``delay`` seconds per encode so a walk can be stopped half-way."""

    info = ModelInfo(id="test3d-boxfill", name="Box fill 3D (test)", version="1", prompts=frozenset({PromptKind.BOX}))
    delay = 0.0


class MaskPromptRecorder(SlowBoxFill):
    """Box + clicks + mask prompts; records the low-res mask each decode received and returns
    logits numbered by call, so a test can tell which result was fed back."""

    info = ModelInfo(id="test3d-refine", name="Refine recorder (test)", version="1",
                     prompts=frozenset({PromptKind.BOX, PromptKind.POINTS, PromptKind.MASK}),
                     recommended_prompts=(PromptKind.BOX, PromptKind.POINTS))
    received: list = []

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        type(self).received.append(None if previous_low_res_mask is None else np.array(previous_low_res_mask))
        mask = np.zeros(embedding.original_size, bool)
        if prompt.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
            mask[y0 : y1 + 1, x0 : x1 + 1] = True
        for (x, y), label in zip(prompt.points, prompt.labels):
            mask[int(y), int(x)] = bool(label)
        logits = np.full((LOW_RES, LOW_RES), float(len(type(self).received)), np.float32)
        return Prediction(mask.astype(np.float32), mask, 0.5, low_res_logits=logits)


class NoMaskPromptRecorder(MaskPromptRecorder):
    info = ModelInfo(id="test3d-nomask", name="No mask prompt (test)", version="1",
                     prompts=frozenset({PromptKind.BOX, PromptKind.POINTS}),
                     recommended_prompts=(PromptKind.BOX, PromptKind.POINTS))


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam_med3d_checkpoint(tmp_path_factory):
    """A small SAM-Med3D (2 blocks, width 48) with random weights, in the official file layout."""
    torch = pytest.importorskip("torch")
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    module = sys.modules[registry.model_class("sam_med3d").__module__]
    network = sys.modules[module.__name__.rsplit(".", 1)[0] + ".network"]
    config = network.Sam3DConfig(embed_dim=48, depth=2, num_heads=4, global_attn_indexes=(1,), prompt_dim=48,
                                 decoder_mlp_dim=64, iou_head_hidden_dim=32)
    torch.manual_seed(0)
    model = network.Sam3D(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("sam_med3d_gui") / "small_sam_med3d.pth"
    torch.save({"model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def engine():
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    for model_class in (SlowBoxFill, MaskPromptRecorder, NoMaskPromptRecorder):
        registry.register(model_class)
    engine = Engine(registry, device="cpu")
    yield engine
    engine.shutdown()


@pytest.fixture
def ai_window(demo_window, engine):
    """The demo phantom with an empty, active segment that AI results go into."""
    controller = demo_window.ai_controller
    controller.set_engine(engine, owned=False)
    editor = controller.editor()
    label = editor.create_segment("AI test").label
    editor.policy.active_label = label
    return demo_window, label


def choose_model(window, model_id: str) -> None:
    """Pick the model in the AI panel, as a user does (the card and buttons follow)."""
    panel = window.ai_panel
    combo = panel.model_combo
    rows = [r for r in range(combo.count()) if combo.itemData(r, Qt.ItemDataRole.UserRole) == model_id]
    assert rows, f"{model_id} is not listed"
    combo.setCurrentIndex(rows[0])
    assert window.ai_controller.model_id == model_id


def drag_slice_box(view, rect) -> None:
    """A real left drag on an axial view from voxel (x0, y0) to (x1, y1)."""
    start = view.voxel_widget_pos(rect[0], rect[1])
    end = view.voxel_widget_pos(rect[2], rect[3])
    drag(view.vtk_widget, [start, QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2), end])


def click_voxel(view, i, j, button=Qt.MouseButton.LeftButton) -> None:
    pos = view.voxel_widget_pos(i, j)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonPress, pos, button, button)
    send_mouse(view.vtk_widget, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)


def wait_idle(qtbot, controller) -> None:
    qtbot.waitUntil(lambda: not controller.propagating, timeout=TIMEOUT_MS)


def label_slices(labels, label) -> list[int]:
    return sorted(int(k) for k in np.unique(np.nonzero(labels.array == label)[0]))


# -- the 3D-box tool ------------------------------------------------------------------------------------
def test_3d_box_from_two_dragged_boxes_fills_the_slices_between_as_one_undo(ai_window, qtbot):
    window, label = ai_window
    controller, panel, view = window.ai_controller, window.ai_panel, window.axial_view
    labels = window.document.segmentation(window.document.active_volume).labelmap
    choose_model(window, "test3d-boxfill")
    controller.set_active(True)
    assert panel.box3d_button.isEnabled()
    panel.box3d_button.click()
    assert controller.box3d_mode
    k = view.slice_index
    drag_slice_box(view, (60, 70, 80, 90))
    assert controller.first_box is not None and controller.first_box.index == k
    assert "first box" in panel.message_label.text()
    assert controller._overlays[view].segment_count == 4  # the first box stays drawn
    before = labels.array.copy()
    view.set_slice(k + 4)
    with qtbot.waitSignal(controller.propagation_running, timeout=TIMEOUT_MS, check_params_cb=lambda r: not r):
        drag_slice_box(view, (70, 80, 100, 100))
    assert "3D box segmented on slices" in panel.message_label.text(), panel.message_label.text()
    assert label_slices(labels, label) == list(range(k, k + 5))
    margin = int(np.ceil(PropagationSettings.for_box().margin_mm / 1.6)) + 1  # the box grows by the margin
    for index, (x0, y0, x1, y1) in ((k, (60, 70, 80, 90)), (k + 4, (70, 80, 100, 100))):
        rows, cols = np.nonzero(labels.array[index] == label)
        assert x0 - margin <= cols.min() <= x0 + 1 and x1 - 1 <= cols.max() <= x1 + margin
        assert y0 - margin <= rows.min() <= y0 + 1 and y1 - 1 <= rows.max() <= y1 + margin
    segment = window.document.segmentation(window.document.active_volume).segments.get(label)
    details = [e for e in segment.provenance if e.kind == "ai"][-1].details
    assert len(details["prompts"]) == 2 and details["parameters"]["box_3d"]["stopped_early"] is False
    window.editing.undo_action.trigger()
    assert np.array_equal(labels.array, before)


@pytest.mark.parametrize("how", ["3d_box", "propagate"])
def test_stop_here_keeps_the_slices_done_and_cancel_keeps_nothing(ai_window, qtbot, how):
    window, label = ai_window
    controller, panel, view = window.ai_controller, window.ai_panel, window.axial_view
    volume = window.document.active_volume
    labels = window.document.segmentation(volume).labelmap
    choose_model(window, "test3d-boxfill")
    k = view.slice_index
    rect = (60.0, 70.0, 80.0, 90.0)
    before = labels.array.copy()

    def start():
        if how == "3d_box":
            return controller.segment_box3d(volume, 0, k - 12, rect, k + 12, rect)
        with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c):
            controller.set_box_pixels(view, rect)
        return controller.propagate(PropagationSettings(max_intensity_shift=None))

    steps = []
    controller.propagation_progress.connect(lambda done, total, message: steps.append(done))
    SlowBoxFill.delay = 0.15
    try:
        assert start()
        assert panel.cancel_button.isEnabled() and panel.stop_button.isEnabled()
        with qtbot.waitSignal(controller.propagation_running, timeout=TIMEOUT_MS, check_params_cb=lambda r: not r):
            qtbot.waitUntil(lambda: max(steps, default=0) >= 3, timeout=TIMEOUT_MS)
            panel.cancel_button.click()
        assert "cancelled" in panel.message_label.text() and np.array_equal(labels.array, before)
        steps.clear()
        assert start()
        with qtbot.waitSignal(controller.propagation_running, timeout=TIMEOUT_MS, check_params_cb=lambda r: not r):
            qtbot.waitUntil(lambda: max(steps, default=0) >= 3, timeout=TIMEOUT_MS)
            panel.stop_button.click()
    finally:
        SlowBoxFill.delay = 0.0
    assert "stopped by you" in panel.message_label.text(), panel.message_label.text()
    assert not panel.stop_button.isEnabled()
    kept = label_slices(labels, label)
    assert 3 <= len(kept) < 25 and k in kept
    assert kept == list(range(kept[0], kept[-1] + 1))  # a contiguous run around the start slice
    segment = window.document.segmentation(volume).segments.get(label)
    details = [e for e in segment.provenance if e.kind == "ai"][-1].details
    key = "box_3d" if how == "3d_box" else "propagation"
    assert details["parameters"][key]["stopped_early"] is True


# -- 3D clicks ------------------------------------------------------------------------------------------
def test_sam_med3d_clicks_refine_on_the_cached_crop_and_are_drawn(ai_window, qtbot, engine, sam_med3d_checkpoint):
    window, label = ai_window
    controller, panel, view = window.ai_controller, window.ai_panel, window.axial_view
    volume = window.document.active_volume
    engine.load_model("sam_med3d", sam_med3d_checkpoint).get(120)
    controller.checkpoints["sam_med3d"] = str(sam_med3d_checkpoint)
    choose_model(window, "sam_med3d")
    assert controller.uses_3d_clicks() and panel.point_mode.isEnabled()
    assert panel.volume_clicks_box.isChecked() and not panel.volume_clicks_box.isEnabled()  # 3D-only model
    controller.set_active(True)
    k = view.slice_index
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        click_voxel(view, 90, 95)
    first = controller.candidate3d
    assert first is not None and first.mask.shape == volume.shape and first.model_id == "sam_med3d"
    assert np.allclose(first.prompt.points[0], (90, 95, k), atol=0.6)
    live = engine.loaded_model("sam_med3d")
    assert live.stats == {"encodes": 1, "decodes": 1}
    assert controller._overlays[view].segment_count >= 2  # the click's cross at least
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        click_voxel(view, 100, 95, Qt.MouseButton.RightButton)
    second = controller.candidate3d
    assert second is not first and second.prompt.labels == (1, 0)
    assert live.stats == {"encodes": 1, "decodes": 2}  # the crop was not encoded again
    assert [c[1] for c in second.prediction.details["clicks"]] == [1, 0]
    # A click on another view lands on the same volume in voxel indices.
    coronal = window.coronal_view
    j = coronal.slice_index
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        controller.add_point(coronal, volume.geometry.index_to_physical((90, j, k)))
    assert np.allclose(controller.candidate3d.prompt.points[-1], (90, j, k), atol=1e-6)
    controller.clear_prompts()
    assert controller.candidate3d is None and controller._overlays[view].segment_count == 0


def test_region_growing_3d_click_and_3d_box_accept_with_provenance(ai_window, qtbot, engine):
    window, label = ai_window
    controller, panel, view = window.ai_controller, window.ai_panel, window.axial_view
    volume = window.document.active_volume
    labels = window.document.segmentation(volume).labelmap
    liver = labels.array == 1  # the phantom's ground truth: somewhere to click
    choose_model(window, "region_growing")
    assert panel.volume_clicks_box.isEnabled() and not controller.uses_3d_clicks()
    panel.volume_clicks_box.setChecked(True)
    assert controller.uses_3d_clicks()
    controller.set_active(True)
    k = view.slice_index
    rows, cols = np.nonzero(liver[k])
    i, j = int(np.median(cols)), int(np.median(rows))
    assert liver[k, j, i]
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        click_voxel(view, i, j)
    mask = controller.candidate3d.mask
    assert np.allclose(controller.candidate3d.prompt.points[0], (i, j, k), atol=0.6)
    expected = engine.predict_3d("region_growing", volume, Prompt3D(points=((i, j, k),), labels=(1,))).get(60)
    assert np.array_equal(mask, expected.mask)  # the click reached the model on the right voxel
    assert mask[k, j, i] and len(np.unique(np.nonzero(mask)[0])) > 10  # grew through many slices
    settle(qtbot, window)
    assert controller._overlays[window.coronal_view].segment_count > 10  # the cross-section on other views
    before = labels.array.copy()
    view.vtk_widget.setFocus()
    qtbot.keyClick(view.vtk_widget, Qt.Key.Key_Return)
    assert controller.candidate3d is None
    written = labels.array == label
    assert written.sum() > 0 and not np.any(written & ~mask)
    segment = window.document.segmentation(volume).segments.get(label)
    details = [e for e in segment.provenance if e.kind == "ai"][-1].details
    prompt = details["prompts"][0]
    assert np.allclose(prompt["points"][0], volume.geometry.index_to_physical((i, j, k)), atol=0.9)
    assert details["model"]["model_id"] == "region_growing"
    window.editing.undo_action.trigger()
    assert np.array_equal(labels.array, before)
    # The 3D-box tool with a 3D mode gives a 3D candidate limited to the box.
    panel.box3d_button.click()
    box = (i - 10, j - 10, i + 10, j + 10)
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        assert controller.segment_box3d(volume, 0, k - 3, box, k + 3, box)
    result = controller.candidate3d
    assert result.prompt.box == (i - 10, j - 10, k - 3, i + 10, j + 10, k + 3)
    zs, ys, xs = np.nonzero(result.mask)
    assert zs.min() >= k - 3 and zs.max() <= k + 3 and xs.min() >= i - 10 and xs.max() <= i + 10


# -- 2D refinement ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_id", ["test3d-refine", "test3d-nomask"])
def test_refining_clicks_send_the_previous_low_res_mask_to_mask_prompt_models(ai_window, qtbot, model_id):
    window, _ = ai_window
    controller, view = window.ai_controller, window.axial_view
    volume = window.document.active_volume
    choose_model(window, model_id)
    MaskPromptRecorder.received = []
    k = view.slice_index

    def prompt_and_wait(action):
        with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c):
            action()
        return controller.candidate

    first = prompt_and_wait(lambda: controller.set_box_pixels(view, (60, 70, 80, 90)))
    second = prompt_and_wait(lambda: controller.add_point(view, volume.geometry.index_to_physical((70, 80, k))))
    prompt_and_wait(lambda: controller.add_point(view, volume.geometry.index_to_physical((75, 85, k)), False))
    prompt_and_wait(lambda: controller.set_box_pixels(view, (50, 60, 70, 80)))  # a new box starts afresh
    received = MaskPromptRecorder.received
    assert len(received) == 4 and received[0] is None and received[3] is None
    if model_id == "test3d-refine":
        assert np.array_equal(received[1], first.low_res) and np.array_equal(received[2], second.low_res)
    else:  # the model takes no mask prompt: nothing is sent
        assert received[1] is None and received[2] is None
    QApplication.processEvents()


# -- oblique views ---------------------------------------------------------------------------------------
def test_a_box_on_an_oblique_view_is_resampled_segmented_and_written_on_the_plane(window, qtbot, engine):
    from medviewer.model import Volume, VolumeInfo
    from medviewer.model.geometry import Geometry
    from medviewer.ui.ai_tools import OBLIQUE, view_where

    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    geometry = Geometry((30, 48, 48), (1.0, 1.0, 1.5), (-24.0, -24.0, -20.0),
                        np.array([[1, 0, 0], [0, c, -s], [0, s, c]]).ravel())
    volume = Volume(np.zeros(geometry.shape, np.int16), geometry, VolumeInfo(name="tilted", modality="MR"))
    window.document.add_volume(volume)
    settle(qtbot, window)
    controller, view = window.ai_controller, window.axial_view
    controller.set_engine(engine, owned=False)
    choose_model(window, "test3d-boxfill")
    axis, plane = view_where(view)
    assert axis == OBLIQUE  # the axial view cuts this volume obliquely
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        controller.set_box_pixels(view, (10, 12, 20, 18))
    candidate = controller.candidate
    assert candidate.axis == OBLIQUE and candidate.mask.shape == plane.shape
    assert controller._overlays[view].segment_count > 4  # the candidate's outline and the box
    assert not controller.propagate()
    assert "oblique" in window.ai_panel.message_label.text()
    assert controller.accept()
    labels = window.document.segmentation(volume).labelmap
    zs, ys, xs = np.nonzero(labels.array)
    assert zs.size > 20 and len(np.unique(zs)) > 1
    lps = geometry.index_to_physical(np.stack([xs, ys, zs], axis=1).astype(float))
    assert np.all(np.abs(lps @ np.asarray(plane.normal) - plane.position) <= plane.thickness / 2 + 1e-6)
    columns = np.array([plane.lps_to_pixel(p)[0] for p in lps])
    assert columns.min() > 9.4 and columns.max() < 20.6
    segments = window.document.segmentation(volume).segments
    label = int(labels.array.max())
    details = [e for e in segments.get(label).provenance if e.kind == "ai"][-1].details
    corners = np.asarray(details["prompts"][0]["box_corners"])
    assert np.allclose(corners, plane.pixel_to_lps([10, 20], [12, 18]))
