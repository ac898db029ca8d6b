"""AI prompting on the 2D views: the prompt ViewTool, the candidate overlay and the controller.

Conventions (micro-sam / ITK-SNAP): left drag = box, left click = positive point, right
click = negative point, T toggles the left click between positive and negative, Esc clears
the prompts, Enter accepts the candidate. Every model call is an Engine job; results come
back through a :class:`~medviewer.ui.ai_bridge.JobBridge`, so the GUI thread never waits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from vtkmodules.vtkCommonCore import vtkPoints, vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from medviewer.ai.api import Prompt2D, PromptKind
from medviewer.ai.engine import JobStatus
from medviewer.model.events import Box
from medviewer.model.provenance import ModelProvenance, SlicePlane, now_iso, prompt_to_physical
from medviewer.ui.ai_bridge import JobBridge
from medviewer.ui.view_tools import ToolEvent, ToolEventKind, ViewTool

log = logging.getLogger(__name__)

DEFAULT_MODEL = "litemedsam"
PREFETCH_RADIUS = 1
CLICK_SLOP_PX = 4
CANDIDATE_RGB = (255, 235, 0)  # bright yellow contour
BOX_RGB = (0, 220, 255)
POSITIVE_RGB = (0, 255, 0)
NEGATIVE_RGB = (255, 40, 40)


# -- geometry ------------------------------------------------------------------------------------
def view_slice(view) -> tuple[int, int] | None:
    """(array axis, index) of the slice a view shows, or None (no volume / oblique plane)."""
    renderer = view.slice_renderer
    plan, volume = renderer.plan, renderer.volume
    if plan is None or volume is None or not plan.axis_aligned:
        return None
    closest = int(np.argmax(np.abs(plan.direction.T @ plan.normal)))  # 0 = i, 1 = j, 2 = k
    axis = 2 - closest
    ijk = volume.geometry.physical_to_index(renderer.cursor)
    index = int(np.clip(round(float(ijk[closest])), 0, volume.shape[axis] - 1))
    return axis, index


def lps_to_pixel(volume, axis: int, point) -> tuple[float, float]:
    """(column, row) on a slice across ``axis`` of an LPS point (Prompt2D convention)."""
    i, j, k = (float(v) for v in volume.geometry.physical_to_index(point))
    if axis == 0:
        return i, j
    if axis == 1:
        return i, k
    return j, k


def slice_box(volume_shape, axis: int, index: int) -> Box:
    start = [0, 0, 0]
    stop = list(int(s) for s in volume_shape)
    start[axis], stop[axis] = index, index + 1
    return Box(tuple(start), tuple(stop))  # type: ignore[arg-type]


def mask_boundary_segments(mask: np.ndarray) -> np.ndarray:
    """Pixel-edge segments (N, 2, 2) of (column, row) points around the true pixels of ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1]
    segments = []
    # edge above / below / left / right of each pixel where the neighbour is outside
    for d_row, d_col, a, b in (
        (-1, 0, (-0.5, -0.5), (0.5, -0.5)),
        (1, 0, (-0.5, 0.5), (0.5, 0.5)),
        (0, -1, (-0.5, -0.5), (-0.5, 0.5)),
        (0, 1, (0.5, -0.5), (0.5, 0.5)),
    ):
        neighbour = padded[1 + d_row : padded.shape[0] - 1 + d_row, 1 + d_col : padded.shape[1] - 1 + d_col]
        rows, cols = np.nonzero(inner & ~neighbour)
        if rows.size:
            start = np.stack([cols + a[0], rows + a[1]], axis=1)
            end = np.stack([cols + b[0], rows + b[1]], axis=1)
            segments.append(np.stack([start, end], axis=1))
    return np.concatenate(segments) if segments else np.zeros((0, 2, 2))


class CandidateOverlay:
    """Lines drawn over one SliceView: the candidate's contour, the box and the points."""

    DEPTH = -1.5  # in front of the labels and the crosshair (the camera sits at -z)

    def __init__(self, view):
        self.view = view
        self.points = vtkPoints()
        self.lines = vtkCellArray()
        self.colors = vtkUnsignedCharArray()
        self.colors.SetNumberOfComponents(3)
        self.data = vtkPolyData()
        self.data.SetPoints(self.points)
        self.data.SetLines(self.lines)
        self.data.GetCellData().SetScalars(self.colors)
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(self.data)
        self.actor = vtkActor()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetLineWidth(2.0)
        self.actor.GetProperty().LightingOff()
        self.actor.PickableOff()
        self.actor.VisibilityOff()
        view.slice_renderer.renderer.AddActor(self.actor)
        self.visible_slice: tuple[int, int] | None = None
        self.segment_count = 0

    def _to_plane(self, volume, axis: int, index: int, column_row: np.ndarray) -> np.ndarray:
        cols, rows = column_row[:, 0], column_row[:, 1]
        if axis == 0:
            ijk = np.stack([cols, rows, np.full_like(cols, index)], axis=1)
        elif axis == 1:
            ijk = np.stack([cols, np.full_like(cols, index), rows], axis=1)
        else:
            ijk = np.stack([np.full_like(cols, index), cols, rows], axis=1)
        lps = np.atleast_2d(volume.geometry.index_to_physical(ijk))
        plan = self.view.slice_renderer.plan
        return np.stack([lps @ plan.right, lps @ plan.down], axis=1)

    def update(self, volume, axis: int, index: int, mask=None, box=None, points=(), labels=(), drag_box=None) -> None:
        segments: list[np.ndarray] = []
        colors: list[tuple[int, int, int]] = []
        if mask is not None and np.any(mask):
            edges = mask_boundary_segments(mask)
            segments.append(edges)
            colors += [CANDIDATE_RGB] * len(edges)
        for rect, rgb in ((box, BOX_RGB), (drag_box, BOX_RGB)):
            if rect is not None:
                x0, y0, x1, y1 = rect
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
                segments.append(np.stack([corners, np.roll(corners, -1, axis=0)], axis=1))
                colors += [rgb] * 4
        for (x, y), label in zip(points, labels):
            r = 1.5
            segments.append(np.array([[[x - r, y], [x + r, y]], [[x, y - r], [x, y + r]]], float))
            colors += [POSITIVE_RGB if label else NEGATIVE_RGB] * 2
        self.points.Reset()
        self.lines.Reset()
        self.colors.Reset()
        self.segment_count = 0
        if segments and self.view.slice_renderer.plan is not None:
            all_segments = np.concatenate(segments).reshape(-1, 2)
            plane = self._to_plane(volume, axis, index, all_segments.astype(float))
            n = plane.shape[0]
            xyz = np.column_stack([plane, np.full(n, self.DEPTH)])
            from vtkmodules.util.numpy_support import numpy_to_vtk

            self.points.SetData(numpy_to_vtk(np.ascontiguousarray(xyz), deep=True))
            from vtkmodules.util.numpy_support import numpy_to_vtkIdTypeArray

            offsets = np.arange(0, n + 1, 2, dtype=np.int64)
            connectivity = np.arange(n, dtype=np.int64)
            self.lines.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True), numpy_to_vtkIdTypeArray(connectivity, deep=True))
            rgb = np.asarray(colors, dtype=np.uint8)
            self.colors.DeepCopy(numpy_to_vtk(rgb, deep=True, array_type=3))  # VTK_UNSIGNED_CHAR
            self.colors.SetNumberOfComponents(3)
            self.segment_count = n // 2
        self.points.Modified()
        self.lines.Modified()
        self.colors.Modified()
        self.data.Modified()
        self.visible_slice = (axis, index)
        self.actor.SetVisibility(self.segment_count > 0)
        self.view.request_render()

    def clear(self) -> None:
        self.segment_count = 0
        self.visible_slice = None
        self.actor.VisibilityOff()
        self.view.request_render()

    def remove(self) -> None:
        self.view.slice_renderer.renderer.RemoveActor(self.actor)


# -- the view tool -------------------------------------------------------------------------------
class AiPromptTool(ViewTool):
    """Turns gestures in a SliceView into prompts for the controller."""

    hint = "AI: drag a box around the structure; click = positive point, right click / T = negative"

    def __init__(self, controller: AiController):
        self.controller = controller
        self._press: tuple[object, np.ndarray, object, Qt.MouseButton] | None = None
        self._dragging = False

    def handle(self, event: ToolEvent) -> bool:
        c = self.controller
        if event.kind is ToolEventKind.KEY:
            key = event.key
            if key == Qt.Key.Key_Escape:
                c.clear_prompts()
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                c.accept()
                return True
            if key == Qt.Key.Key_T:
                c.toggle_polarity()
                return True
            return False
        if event.kind is ToolEventKind.WHEEL:
            return False  # scrolling works as usual
        if event.kind is ToolEventKind.PRESS:
            if event.button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton) and event.point_lps is not None \
                    and not event.shift:
                self._press = (event.view, np.asarray(event.point_lps, float), event.widget_pos, event.button)
                self._dragging = False
                return True
            return False
        if self._press is None:
            return False
        view, start, start_pos, button = self._press
        if event.kind is ToolEventKind.MOVE:
            if button == Qt.MouseButton.LeftButton and event.point_lps is not None and event.widget_pos is not None:
                if math.dist((start_pos.x(), start_pos.y()), (event.widget_pos.x(), event.widget_pos.y())) > CLICK_SLOP_PX:
                    self._dragging = True
                if self._dragging:
                    c.preview_drag(view, start, np.asarray(event.point_lps, float))
            return True
        if event.kind is ToolEventKind.RELEASE:
            self._press = None
            end = event.point_lps
            if self._dragging and end is not None:
                c.set_box(view, start, np.asarray(end, float))
            elif button == Qt.MouseButton.RightButton:
                c.add_point(view, start, positive=False)
            else:
                c.add_point(view, start, positive=c.positive_mode)
            self._dragging = False
            return True
        return False

    def deactivate(self) -> None:
        self._press = None


# -- the controller ------------------------------------------------------------------------------
@dataclass
class Candidate:
    axis: int
    index: int
    mask: np.ndarray
    score: float | None
    prompt: Prompt2D
    prompt_time: str
    model_id: str
    low_res: np.ndarray | None = None


class AiController(QObject):
    """State of AI prompting in one MainWindow: model, prompts, candidate, jobs."""

    state_changed = Signal(str)  # "idle", "loading…", "encoding…", "ready", "segmenting…"
    candidate_changed = Signal(object)  # Candidate or None
    message = Signal(str, bool)  # text, is_error
    propagation_progress = Signal(int, int, str)
    propagation_running = Signal(bool)
    model_loaded = Signal(str)  # model id
    active_changed = Signal(bool)
    models_changed = Signal()

    def __init__(self, window, engine=None, registry=None):
        super().__init__(window)
        self.window = window
        self._engine = engine
        self._owns_engine = False
        self._registry = registry
        self.bridge = JobBridge(self)
        self.model_id = DEFAULT_MODEL
        self.checkpoints: dict[str, str] = {}  # model id -> user-chosen checkpoint
        self.tool = AiPromptTool(self)
        self.active = False
        self.positive_mode = True
        self.state = "idle"
        self.last_error = ""
        self.box: tuple[float, float, float, float] | None = None
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.prompt_slice: tuple[int, int] | None = None  # (axis, index) the prompts are on
        self.prompt_view = None
        self.candidate: Candidate | None = None
        self.last_accepted: Candidate | None = None
        self._segment_job = None
        self._segment_dirty = False
        self._encode_job = None
        self._propagation_job = None
        self._propagation_seed: Candidate | None = None
        self._overlays: dict[object, CandidateOverlay] = {}
        self._closed = False
        self.timings: dict[str, float] = {}
        self._prompt_started = 0.0
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(80)
        self._prefetch_timer.timeout.connect(self._encode_current)
        self._last_view = None
        window.installEventFilter(self)
        for view in self.views():
            view.activated.connect(lambda view=view: self._on_view_activated(view))
        if hasattr(window, "cursor_changed"):
            window.cursor_changed.connect(self._on_cursor_changed)

    # -- engine and models ------------------------------------------------------------------
    @property
    def registry(self):
        if self._engine is not None:
            return self._engine.registry
        if self._registry is None:
            from medviewer.ai.registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    @property
    def engine(self):
        if self._engine is None:
            from medviewer.ai.engine import Engine

            self._engine = Engine(self.registry)
            self._owns_engine = True
        return self._engine

    def set_engine(self, engine, owned: bool = False) -> None:
        """Use ``engine`` (tests share one with a loaded model); the old one is shut down if ours."""
        if self._engine is not None and self._owns_engine and self._engine is not engine:
            self._engine.shutdown(wait=False)
        self._engine, self._owns_engine = engine, owned
        self._registry = engine.registry
        self.models_changed.emit()

    def model_info(self, model_id: str | None = None):
        try:
            return self.registry.get(model_id or self.model_id).info
        except Exception:  # noqa: BLE001
            return None

    def supports_points(self) -> bool:
        """Whether clicks are offered: the model takes points *and* recommends them (LiteMedSAM's
        point path is untrained, so it is box-only in the GUI)."""
        info = self.model_info()
        if info is None or not info.supports(PromptKind.POINTS):
            return False
        return not info.recommended_prompts or PromptKind.POINTS in info.recommended_prompts

    def set_model(self, model_id: str) -> None:
        if model_id == self.model_id:
            return
        self.model_id = model_id
        self.reject()
        self.clear_prompts()
        if self.active:
            self.load_model()

    def checkpoint_sha256(self) -> str:
        engine = self._engine
        sha = getattr(engine, "_known_sha", {}).get(self.model_id, "") if engine is not None else ""
        if not sha:
            info = self.model_info()
            sha = info.checkpoint.sha256 if info is not None else ""
        return sha

    def load_model(self, checkpoint: str | None = None) -> None:
        checkpoint = checkpoint or self.checkpoints.get(self.model_id)
        model_id = self.model_id
        self._set_state("loading…")
        try:
            job = self.engine.load_model(model_id, checkpoint)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return

        def done(job):
            if job.status is JobStatus.DONE:
                self.message.emit(f"{model_id} loaded on {self.engine.device}", False)
                self.model_loaded.emit(model_id)
                self._set_state("ready")
                self.schedule_encode()
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "loading failed")
                self.model_loaded.emit(model_id)

        self.bridge.watch(job, done)

    def set_device(self, device: str) -> None:
        job = self.engine.set_device(device)

        def done(job):
            if job.status is JobStatus.FAILED:
                self._error(job.error or "could not switch device")
            else:
                self.message.emit(f"AI device: {job.result}", False)
                if self.active:
                    self.load_model()

        self.bridge.watch(job, done)

    # -- activation ---------------------------------------------------------------------------
    def views(self) -> list:
        return list(getattr(self.window, "slice_views", {}).values())

    def set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        editing = getattr(self.window, "editing", None)
        if active and editing is not None and getattr(editing, "tool", ""):
            editing.set_tool("")  # one tool on the views at a time
        for view in self.views():
            if active:
                view.view_tool = self.tool
            elif view.view_tool is self.tool:
                view.view_tool = None
        if active:
            self.tool.activate()
            if hasattr(self.window, "statusBar"):
                self.window.statusBar().showMessage(self.tool.hint, 5000)
            self.load_model()
        else:
            self.tool.deactivate()
            self._prefetch_timer.stop()
            if self._engine is not None:
                self._engine.cancel_prefetch()
            self.clear_prompts()
        self.active_changed.emit(active)

    def _on_cursor_changed(self, *_args) -> None:
        if self.active:
            self.schedule_encode()
            self._refresh_overlays()

    def schedule_encode(self) -> None:
        self._prefetch_timer.start()

    def _on_view_activated(self, view) -> None:
        if self._last_view is not view:
            self._last_view = view
            if self.active:
                self.schedule_encode()

    def current_view(self):
        """The view whose slice is encoded ahead: the one the user last pressed in (axial first)."""
        if self._last_view is not None:
            return self._last_view
        if self.prompt_view is not None:
            return self.prompt_view
        return getattr(self.window, "slice_view", None) or (self.views()[0] if self.views() else None)

    def _encode_current(self) -> None:
        """Encode the slice under the cursor (then its neighbours) in the background."""
        if self._closed or not self.active:
            return
        view = self.current_view()
        volume = getattr(view, "volume", None)
        where = view_slice(view) if view is not None else None
        if volume is None or where is None:
            return
        info = self.model_info()
        if info is None or not info.is_2d:
            return
        axis, index = where
        try:
            job = self.engine.encode(self.model_id, volume, axis, index, priority=50)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self._encode_job = job
        if not job.done:
            self._set_state("encoding…")

        def done(job):
            if job is not self._encode_job:
                return
            self._encode_job = None
            if job.status is JobStatus.DONE:
                if self.state == "encoding…":
                    self._set_state("ready")
                try:
                    self.engine.prefetch(self.model_id, volume, axis, index, PREFETCH_RADIUS)
                except Exception:  # noqa: BLE001
                    log.exception("prefetch failed")
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "encoding failed")

        self.bridge.watch(job, done)

    # -- prompts ------------------------------------------------------------------------------
    def _slice_of(self, view):
        where = view_slice(view)
        if where is None:
            self._error("AI prompts need an axis-aligned view of the volume")
        return where

    def _start_prompt_on(self, view, where) -> None:
        if self.prompt_slice != where or self.prompt_view is not view:
            self.box, self.points, self.labels = None, [], []
            self.candidate = None
            self.candidate_changed.emit(None)
        self.prompt_slice, self.prompt_view = where, view

    def preview_drag(self, view, start, end) -> None:
        where = view_slice(view)
        if where is None:
            return
        volume = view.volume
        x0, y0 = lps_to_pixel(volume, where[0], start)
        x1, y1 = lps_to_pixel(volume, where[0], end)
        self._overlay(view).update(volume, *where, mask=self.candidate.mask if self._candidate_on(where) else None,
                                   box=None, points=self.points if self.prompt_slice == where else (),
                                   labels=self.labels if self.prompt_slice == where else (),
                                   drag_box=(x0, y0, x1, y1))

    def _candidate_on(self, where) -> bool:
        c = self.candidate
        return c is not None and (c.axis, c.index) == tuple(where)

    def set_box(self, view, start, end) -> None:
        where = self._slice_of(view)
        if where is None:
            return
        volume = view.volume
        x0, y0 = lps_to_pixel(volume, where[0], start)
        x1, y1 = lps_to_pixel(volume, where[0], end)
        self.set_box_pixels(view, (x0, y0, x1, y1), where)

    def set_box_pixels(self, view, box, where=None) -> None:
        """A box in slice pixel indices (x0, y0, x1, y1) on ``view``'s current slice."""
        where = where or self._slice_of(view)
        if where is None:
            return
        info = self.model_info()
        if info is not None and not info.supports(PromptKind.BOX):
            self._error(f"{info.name} does not accept box prompts")
            return
        self._start_prompt_on(view, where)
        x0, y0, x1, y1 = box
        self.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self._run_segment()

    def add_point(self, view, point_lps, positive: bool = True) -> None:
        where = self._slice_of(view)
        if where is None:
            return
        if not self.supports_points():
            info = self.model_info()
            name = info.name if info is not None else self.model_id
            self.message.emit(f"{name} accepts box prompts only: drag a box around the structure", True)
            return
        self._start_prompt_on(view, where)
        self.points.append(lps_to_pixel(view.volume, where[0], point_lps))
        self.labels.append(1 if positive else 0)
        self._run_segment()

    def toggle_polarity(self) -> None:
        self.positive_mode = not self.positive_mode
        self.message.emit("clicks add " + ("positive" if self.positive_mode else "negative") + " points", False)

    def prompt(self) -> Prompt2D:
        return Prompt2D(box=self.box, points=tuple(self.points), labels=tuple(self.labels))

    def _run_segment(self) -> None:
        """Decode the current prompt; coalesces: while a job runs, only the latest prompt runs next.

        The job is queued before the prompt is drawn, so the decoder runs while the view renders.
        """
        if self._segment_job is not None and not self._segment_job.done:
            self._segment_dirty = True
            self._refresh_overlays()
            return
        prompt = self.prompt()
        if prompt.is_empty or self.prompt_view is None or self.prompt_slice is None:
            self._refresh_overlays()
            return
        view, (axis, index) = self.prompt_view, self.prompt_slice
        volume = view.volume
        prompt_time = now_iso()
        model_id = self.model_id
        self._prompt_started = time.perf_counter()
        try:
            job = self.engine.segment(model_id, volume, axis, index, prompt)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self._segment_job = job
        self._segment_dirty = False
        self._set_state("segmenting…")
        # The box / points: a deferred repaint (VTK renders hold the GIL the decoder needs; the
        # rubber band was already drawn during the drag). The candidate is drawn at once.
        self._refresh_overlays(immediate=False)

        def done(job):
            if job is not self._segment_job:
                return
            self._segment_job = None
            if job.status is JobStatus.DONE and (axis, index) == self.prompt_slice and model_id == self.model_id:
                prediction = job.result
                self.candidate = Candidate(axis, index, np.asarray(prediction.mask, bool), prediction.score,
                                           prompt, prompt_time, model_id, prediction.low_res_logits)
                self._refresh_overlays()
                self.timings["prompt_to_candidate_s"] = time.perf_counter() - self._prompt_started
                self.candidate_changed.emit(self.candidate)
                self._set_state("ready")
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "segmentation failed")
            if self._segment_dirty:
                self._run_segment()

        self.bridge.watch(job, done)

    def clear_prompts(self) -> None:
        self.box, self.points, self.labels = None, [], []
        self.candidate = None
        self.prompt_slice = None
        self._segment_dirty = False
        for overlay in self._overlays.values():
            overlay.clear()
        self.candidate_changed.emit(None)

    def reject(self) -> None:
        self.clear_prompts()

    # -- overlays -----------------------------------------------------------------------------
    def _overlay(self, view) -> CandidateOverlay:
        overlay = self._overlays.get(view)
        if overlay is None:
            overlay = self._overlays[view] = CandidateOverlay(view)
        return overlay

    def _refresh_overlays(self, immediate: bool = True) -> None:
        for view in self.views():
            if getattr(view, "_shut_down", False):
                continue
            where = view_slice(view)
            if where is None or view is not self.prompt_view or where != self.prompt_slice:
                if view in self._overlays:
                    self._overlays[view].clear()
                continue
            mask = self.candidate.mask if self._candidate_on(where) else None
            self._overlay(view).update(view.volume, *where, mask=mask, box=self.box, points=self.points,
                                       labels=self.labels)
            if immediate:
                view.render_now()

    # -- accept -------------------------------------------------------------------------------
    def editor(self):
        editor = getattr(getattr(self.window, "editing", None), "editor", None)
        if editor is not None:
            return editor
        from medviewer.model.editing import SegmentEditor

        document = self.window.document
        volume = document.active_volume
        if volume is None:
            return None
        cached = getattr(self, "_editor", None)
        if cached is not None and cached.volume is volume:
            return cached
        self._editor = SegmentEditor.for_document(document, volume)
        return self._editor

    def _active_label(self, editor) -> int | None:
        label = editor.policy.active_label
        if label and label in editor.segments and not editor.segments.get(label).locked:
            return int(label)
        panel = getattr(self.window, "segment_panel", None)
        for name in ("current_label", "active_label", "selected_label"):
            value = getattr(panel, name, None)
            value = value() if callable(value) else value
            if value:
                return int(value)
        return None

    def provenance(self, model_id: str) -> ModelProvenance:
        info = self.model_info(model_id)
        checkpoint = self.checkpoints.get(model_id, "")
        extra = {"checkpoint_path": checkpoint} if checkpoint else {}
        if info is None:
            return ModelProvenance(model_id, checkpoint_sha256=self.checkpoint_sha256(), **({"extra": extra}))
        return ModelProvenance.from_model_info(info, self.checkpoint_sha256(), str(self.engine.device), **extra)

    def accept(self) -> bool:
        candidate = self.candidate
        if candidate is None or not candidate.mask.any():
            self.message.emit("nothing to accept: draw a box first", True)
            return False
        volume = self.window.document.active_volume
        editor = self.editor()
        if editor is None or volume is None:
            return False
        label = self._active_label(editor)
        try:
            if label is None:
                label = editor.create_segment("AI segment").label
                editor.policy.active_label = label
            prompts = [prompt_to_physical(candidate.prompt, volume.geometry, SlicePlane(candidate.axis, candidate.index),
                                          candidate.prompt_time)]
            box = slice_box(volume.shape, candidate.axis, candidate.index)
            mask3 = np.expand_dims(candidate.mask, candidate.axis)
            editor.accept_ai_result(mask3, box, label, model=self.provenance(candidate.model_id), prompts=prompts,
                                    parameters={"score": candidate.score, "axis": candidate.axis,
                                                "index": candidate.index})
        except Exception as exc:  # noqa: BLE001 - EditRefused (locked segment) and friends
            self._error(str(exc))
            return False
        self.last_accepted = candidate
        self.clear_prompts()
        self.message.emit(f"accepted into segment {label}", False)
        return True

    # -- propagation --------------------------------------------------------------------------
    def propagate(self, settings=None) -> bool:
        seed = self.candidate if self.candidate is not None else self.last_accepted
        if seed is None or not seed.mask.any():
            self.message.emit("accept or draw a mask first, then propagate it", True)
            return False
        if self._propagation_job is not None:
            return False
        volume = self.window.document.active_volume
        try:
            from medviewer.ai.propagation import start_propagation

            job = start_propagation(self.engine, seed.model_id, volume, seed.axis, seed.index, seed.mask, settings)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return False
        self._propagation_job = job
        self._propagation_seed = seed
        self.propagation_running.emit(True)
        self._set_state("propagating…")

        def progress(job, done, total, message):
            self.propagation_progress.emit(done, total, message)

        def done(job):
            self._propagation_job = None
            self.propagation_running.emit(False)
            self._set_state("ready")
            if job.status is JobStatus.CANCELLED:
                self.message.emit("propagation cancelled; nothing was written", False)
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "propagation failed")
            else:
                self._accept_propagation(job.result, seed)

        self.bridge.watch(job, done, progress)
        return True

    def cancel_propagation(self) -> None:
        if self._propagation_job is not None:
            self._propagation_job.cancel()

    @property
    def propagating(self) -> bool:
        return self._propagation_job is not None

    def _accept_propagation(self, result, seed: Candidate) -> None:
        volume = self.window.document.active_volume
        editor = self.editor()
        if editor is None or volume is None or result.mask.shape != volume.shape:
            self._error("the volume changed while propagating; nothing was written")
            return
        box = Box.from_mask(result.mask)
        if box is None:
            self.message.emit("propagation found nothing", True)
            return
        label = self._active_label(editor)
        try:
            if label is None:
                label = editor.create_segment("AI segment").label
                editor.policy.active_label = label
            prompts = [prompt_to_physical(seed.prompt, volume.geometry, SlicePlane(seed.axis, seed.index),
                                          seed.prompt_time)]
            editor.accept_ai_result(result.mask[box.slices], box, label, model=self.provenance(seed.model_id),
                                    prompts=prompts,
                                    parameters={"propagation": {"axis": result.axis, "start": result.start,
                                                                "slices": result.slices,
                                                                "stop_reasons": dict(result.stop_reasons)}})
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self.candidate = None
        self.candidate_changed.emit(None)
        self._refresh_overlays()
        rng = result.slice_range
        self.message.emit(f"propagated to slices {rng[0]}–{rng[1]}" if rng else "propagated", False)

    # -- state and errors ---------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    def _error(self, text: str) -> None:
        self.last_error = text
        self._set_state("error")
        self.message.emit(text, True)
        if hasattr(self.window, "statusBar"):
            self.window.statusBar().showMessage(f"AI: {text}", 10000)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._prefetch_timer.stop()
        self.bridge.close()
        for view in self.views():
            if view.view_tool is self.tool:
                view.view_tool = None
        for overlay in self._overlays.values():
            overlay.remove()
        self._overlays.clear()
        if self._engine is not None and self._owns_engine:
            self._engine.shutdown(wait=True, timeout=10)
        elif self._engine is not None:
            self._engine.cancel_prefetch()
            for job in (self._segment_job, self._propagation_job, self._encode_job):
                if job is not None:
                    job.cancel()


__all__ = ["AiController", "AiPromptTool", "Candidate", "CandidateOverlay", "lps_to_pixel", "view_slice"]
