"""AI prompting on the 2D views: the prompt ViewTool, the candidate overlay and the controller.

Conventions (micro-sam / ITK-SNAP): left drag = box, left click = positive point, right
click = negative point, T toggles the left click between positive and negative, Esc clears
the prompts, Enter accepts the candidate. Every model call is an Engine job; results come
back through a :class:`~medviewer.ui.ai_bridge.JobBridge`, so the GUI thread never waits.

Further clicks on a slice refine the result: models that take a mask prompt get the previous
low-res logits back (SAM's interactive loop). 3D tools: the 3D box (a box on the first slice of
a structure, then one on its last; 2D models walk the slices between, 3D models get the 3D box)
and 3D clicks for 3D models (SAM-Med3D continues from its previous result). Views that cut the
volume obliquely are resampled for 2D models (:mod:`medviewer.ai.oblique`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from vtkmodules.vtkCommonCore import vtkPoints, vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from medviewer.ai.api import Prediction3D, Prompt2D, Prompt3D, PromptKind
from medviewer.ai.checkpoint_store import CheckpointStore
from medviewer.ai.engine import JobStatus, take_slice
from medviewer.ai.oblique import ObliquePlane, plane_mask_to_volume
from medviewer.model.events import Box
from medviewer.model.provenance import ModelProvenance, SlicePlane, now_iso, prompt_to_physical
from medviewer.ui.ai_bridge import JobBridge
from medviewer.ui.view_tools import ToolEvent, ToolEventKind, ViewTool

log = logging.getLogger(__name__)

DEFAULT_MODEL = "litemedsam"
PREFETCH_RADIUS = 1
CLICK_SLOP_PX = 4
#: A new prompt's box / point marks wait this long for the candidate before they are drawn
#: alone: a render during the decode competes with it for the CPU (on two cores it made
#: box -> candidate 10-15 ms slower), and with the embedding cached the candidate usually
#: arrives first and is drawn together with them. The drag's rubber band stays on screen
#: meanwhile; 100 ms is still perceived as immediate.
PROMPT_PAINT_DELAY_MS = 100
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


OBLIQUE = "oblique"  # the "axis" of a prompt on a view that cuts the volume obliquely


def view_where(view):
    """Where a view's prompts live: ``(axis, index)`` of an axis-aligned slice, or
    ``(OBLIQUE, ObliquePlane)`` for a view cutting the volume obliquely; None without a volume."""
    where = view_slice(view)
    if where is not None:
        return where
    renderer = view.slice_renderer
    if renderer.plan is None or renderer.volume is None:
        return None
    return OBLIQUE, ObliquePlane.from_slice_geometry(renderer.plan, renderer.cursor)


def where_to_pixel(volume, where, point) -> tuple[float, float]:
    """(column, row) of an LPS point on the slice or oblique plane ``where``."""
    if where[0] == OBLIQUE:
        return where[1].lps_to_pixel(point)
    return lps_to_pixel(volume, where[0], point)


def lps_to_pixel(volume, axis: int, point) -> tuple[float, float]:
    """(column, row) on a slice across ``axis`` of an LPS point (Prompt2D convention)."""
    i, j, k = (float(v) for v in volume.geometry.physical_to_index(point))
    if axis == 0:
        return i, j
    if axis == 1:
        return i, k
    return j, k


def pixel_to_voxel(axis: int, index: int, column: float, row: float) -> tuple[float, float, float]:
    """(i, j, k) voxel of a (column, row) pixel on the slice ``index`` across ``axis``."""
    if axis == 0:
        return column, row, float(index)
    if axis == 1:
        return column, float(index), row
    return float(index), column, row


def voxel_on_slice(axis: int, index: int, ijk, tolerance: float = 0.5) -> tuple[float, float] | None:
    """(column, row) of voxel ``ijk`` on slice ``index`` across ``axis``, or None when it lies
    more than ``tolerance`` slices away (3D clicks are drawn on the slices they were made on)."""
    i, j, k = (float(v) for v in ijk)
    depth, column, row = {0: (k, i, j), 1: (j, i, k), 2: (i, j, k)}[axis]
    return (column, row) if abs(depth - index) <= tolerance else None


def box3d_from_slice_boxes(axis: int, index_a: int, rect_a, index_b: int, rect_b) -> tuple[float, ...]:
    """The 3D box (x0, y0, z0, x1, y1, z1) in voxel indices enclosing two slice boxes."""
    corners = [pixel_to_voxel(axis, index, x, y)
               for index, rect in ((index_a, rect_a), (index_b, rect_b))
               for x, y in ((rect[0], rect[1]), (rect[2], rect[3]))]
    low = tuple(min(c[d] for c in corners) for d in range(3))
    high = tuple(max(c[d] for c in corners) for d in range(3))
    return low + high


def oblique_prompt_record(prompt: Prompt2D, plane: ObliquePlane, time: str) -> dict:
    """A prompt on an oblique plane in LPS mm (the provenance record of an accepted mask)."""
    record: dict = {"coordinates": "LPS mm", "time": time, "plane": "oblique"}
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        record["box_corners"] = plane.pixel_to_lps([x0, x1], [y0, y1]).tolist()
    if prompt.points:
        columns, rows = zip(*prompt.points)
        record["points"] = plane.pixel_to_lps(columns, rows).tolist()
        record["point_labels"] = list(prompt.labels)
    return record


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

    def _to_plane(self, volume, axis, index, column_row: np.ndarray) -> np.ndarray:
        cols, rows = column_row[:, 0], column_row[:, 1]
        plan = self.view.slice_renderer.plan
        if axis == OBLIQUE:
            lps = index.pixel_to_lps(cols, rows)
            return np.stack([lps @ plan.right, lps @ plan.down], axis=1)
        if axis == 0:
            ijk = np.stack([cols, rows, np.full_like(cols, index)], axis=1)
        elif axis == 1:
            ijk = np.stack([cols, np.full_like(cols, index), rows], axis=1)
        else:
            ijk = np.stack([np.full_like(cols, index), cols, rows], axis=1)
        lps = np.atleast_2d(volume.geometry.index_to_physical(ijk))
        plan = self.view.slice_renderer.plan
        return np.stack([lps @ plan.right, lps @ plan.down], axis=1)

    def update(self, volume, axis: int, index: int, mask=None, box=None, points=(), labels=(), drag_box=None,
               render: bool = True) -> None:
        """Rebuild the lines; ``render`` False leaves the repaint to whoever renders the view next."""
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
        if render:
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


@dataclass
class Candidate3D:
    """A 3D model's whole-volume result waiting for Accept; further clicks refine it."""

    mask: np.ndarray  # bool, the volume's [z, y, x] shape
    score: float | None
    prompt: Prompt3D
    prompt_time: str
    model_id: str
    prediction: Prediction3D | None = None
    volume: object = None


@dataclass
class FirstSliceBox:
    """The first of the two boxes of the 3D-box tool, waiting for the box on the last slice."""

    axis: int
    index: int
    rect: tuple[float, float, float, float]
    prompt_time: str


class AiController(QObject):
    """State of AI prompting in one MainWindow: model, prompts, candidate, jobs."""

    state_changed = Signal(str)  # "idle", "loading…", "encoding…", "ready", "segmenting…"
    candidate_changed = Signal(object)  # Candidate or None
    message = Signal(str, bool)  # text, is_error
    propagation_progress = Signal(int, int, str)
    propagation_running = Signal(bool)  # any long job: propagation, 3D box, 3D model
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
        self.checkpoints = CheckpointStore()  # model id -> user-chosen checkpoint (the dock and Settings > Models)
        self.tool = AiPromptTool(self)
        self.active = False
        self.positive_mode = True
        self.state = "idle"
        self.last_error = ""
        self._errors_reported = 0  # counts errors shown, so a late "loaded" does not hide one
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
        self._propagation_job = None  # the long job: propagation, 3D box walk or 3D model run
        self._stop_event: threading.Event | None = None  # "Stop here" for walks; None: not stoppable
        self._refining = False  # further clicks feed the candidate's low-res mask back
        # 3D tools: the 3D-box tool (box on the first slice, then on the last) and 3D clicks
        self.box3d_mode = False
        self.volume_clicks = False  # clicks go to a 3D model (always so for 3D-only models)
        self.first_box: FirstSliceBox | None = None
        self.points3d: list[tuple[float, float, float]] = []
        self.labels3d: list[int] = []
        self.box3d: tuple[float, ...] | None = None
        self.candidate3d: Candidate3D | None = None
        self._job3d_dirty = False
        self._overlays: dict[object, CandidateOverlay] = {}
        self._closed = False
        self.timings: dict[str, float] = {}
        self._prompt_started = 0.0
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(80)
        self._prefetch_timer.timeout.connect(self._encode_current)
        self._prompt_paint_timer = QTimer(self)
        self._prompt_paint_timer.setSingleShot(True)
        self._prompt_paint_timer.setInterval(PROMPT_PAINT_DELAY_MS)
        self._prompt_paint_timer.timeout.connect(self._paint_prompt)
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

    def uses_3d_clicks(self) -> bool:
        """Whether clicks segment the whole volume: a 3D-only model, or a 2D + 3D model (region
        growing) with "3D clicks" switched on."""
        info = self.model_info()
        if info is None or not info.is_3d or not info.supports(PromptKind.POINTS_3D):
            return False
        return self.volume_clicks or not info.is_2d

    def set_volume_clicks(self, on: bool) -> None:
        if bool(on) != self.volume_clicks:
            self.volume_clicks = bool(on)
            self.clear_prompts()

    def set_box3d_mode(self, on: bool) -> None:
        """The 3D-box tool: a box on the first slice of the structure, then one on its last."""
        self.box3d_mode = bool(on)
        self.first_box = None
        self._refresh_overlays(immediate=False)
        if on:
            self.message.emit("3D box: drag a box on the first slice of the structure, scroll to its last slice "
                              "and drag a second box", False)

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
        sha = engine.checkpoint_sha(self.model_id) if engine is not None else ""
        if not sha:
            info = self.model_info()
            sha = info.checkpoint.sha256 if info is not None else ""
        return sha

    def set_checkpoint(self, model_id: str, path: str | None, load: bool = False) -> None:
        """Record (``path`` None: forget) the file ``model_id`` loads. A copy loaded from another
        file is unloaded; the active model (or, with ``load``, the current one) reloads now."""
        if path:
            self.checkpoints.remember(model_id, path)
        else:
            self.checkpoints.forget(model_id)
        engine = self._engine
        if engine is not None and model_id in engine.loaded_models():
            engine.unload_model(model_id)  # queued before any later load: next use reads the new file
        if model_id == self.model_id and (load or self.active):
            self.load_model()
        self.models_changed.emit()

    def load_model(self, checkpoint: str | None = None) -> None:
        checkpoint = checkpoint or self.checkpoints.get(self.model_id)
        model_id = self.model_id
        self._set_state("loading…")
        try:
            job = self.engine.load_model(model_id, checkpoint)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return

        errors_before = self._errors_reported

        def done(job):
            if job.status is JobStatus.DONE:
                self.model_loaded.emit(model_id)
                # A click may have overtaken the load (it loads the model itself) and failed:
                # "loaded" must not paper over that newer error.
                if self._errors_reported == errors_before:
                    self.message.emit(f"{model_id} loaded on {self.engine.device}", False)
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
            self._refresh_overlays(immediate=False)  # the views repaint on their own coalesced render

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
        where = view_where(view)
        if where is None:
            self._error("AI prompts need a volume in the view")
        return where

    def _start_prompt_on(self, view, where) -> None:
        if self.prompt_slice != where or self.prompt_view is not view:
            self.box, self.points, self.labels = None, [], []
            self.candidate = None
            self.candidate_changed.emit(None)
        self.prompt_slice, self.prompt_view = where, view

    def preview_drag(self, view, start, end) -> None:
        where = view_where(view)
        if where is None:
            return
        volume = view.volume
        x0, y0 = where_to_pixel(volume, where, start)
        x1, y1 = where_to_pixel(volume, where, end)
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
        x0, y0 = where_to_pixel(volume, where, start)
        x1, y1 = where_to_pixel(volume, where, end)
        self.set_box_pixels(view, (x0, y0, x1, y1), where)

    def set_box_pixels(self, view, box, where=None) -> None:
        """A box in slice pixel indices (x0, y0, x1, y1) on ``view``'s current slice."""
        where = where or self._slice_of(view)
        if where is None:
            return
        if self.box3d_mode:
            self._add_slice_box(view, where, box)
            return
        info = self.model_info()
        if info is not None and not info.supports(PromptKind.BOX):
            self._error(f"{info.name} does not accept box prompts")
            return
        self._start_prompt_on(view, where)
        x0, y0, x1, y1 = box
        self.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self._refining = False  # a new box starts afresh
        self._run_segment()

    def add_point(self, view, point_lps, positive: bool = True) -> None:
        if self.uses_3d_clicks():
            self.add_point_3d(view, point_lps, positive)
            return
        where = self._slice_of(view)
        if where is None:
            return
        if not self.supports_points():
            info = self.model_info()
            name = info.name if info is not None else self.model_id
            self.message.emit(f"{name} accepts box prompts only: drag a box around the structure", True)
            return
        self._start_prompt_on(view, where)
        if self._candidate_on(where):
            self._refining = True  # clicks after a first result refine it (SAM's iterative loop)
        self.points.append(where_to_pixel(view.volume, where, point_lps))
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
        low_res = self._refinement_mask(model_id, axis, index)
        try:
            if axis == OBLIQUE:
                job = self.engine.segment_oblique(model_id, volume, index, prompt, previous_low_res_mask=low_res)
            else:
                job = self.engine.segment(model_id, volume, axis, index, prompt, previous_low_res_mask=low_res)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self._segment_job = job
        self._segment_dirty = False
        self._set_state("segmenting…")
        # The box / points are drawn with the candidate, or alone if it takes longer than
        # PROMPT_PAINT_DELAY_MS (a render now would slow the decoder down).
        self._refresh_overlays(immediate=False, render=False)
        self._prompt_paint_timer.start()

        def done(job):
            if job is not self._segment_job:
                return
            self._segment_job = None
            if job.status is JobStatus.DONE and (axis, index) == self.prompt_slice and model_id == self.model_id:
                prediction = job.result
                self.candidate = Candidate(axis, index, np.asarray(prediction.mask, bool), prediction.score,
                                           prompt, prompt_time, model_id, prediction.low_res_logits)
                self._prompt_paint_timer.stop()
                self._refresh_overlays()
                self.timings["prompt_to_candidate_s"] = time.perf_counter() - self._prompt_started
                self.candidate_changed.emit(self.candidate)
                self._set_state("ready")
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "segmentation failed")
            if self._segment_dirty:
                self._run_segment()

        self.bridge.watch(job, done)

    def _refinement_mask(self, model_id: str, axis: int, index: int) -> np.ndarray | None:
        """The candidate's low-res logits to send with a refining click, for models that take a
        mask prompt; None for the first prompt, a new box, or another slice or model."""
        c = self.candidate
        if not self._refining or c is None or c.low_res is None or c.model_id != model_id:
            return None
        if (c.axis, c.index) != (axis, index):
            return None
        info = self.model_info(model_id)
        return c.low_res if info is not None and info.supports(PromptKind.MASK) else None

    # -- 3D: the 3D-box tool and clicks for 3D models ------------------------------------------
    def _add_slice_box(self, view, where, rect) -> None:
        axis, index = where
        if axis == OBLIQUE:
            self._error("the 3D box needs a view along the volume's slices (this one cuts it obliquely)")
            return
        x0, y0, x1, y1 = rect
        rect = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        first = self.first_box
        if first is None or first.axis != axis or first.index == index:
            self.first_box = FirstSliceBox(axis, index, rect, now_iso())
            self.message.emit(f"3D box: first box on slice {index}; scroll to the last slice of the structure "
                              "and drag the second box (Esc starts over)", False)
            self._refresh_overlays()
            return
        self.first_box = None
        self.segment_box3d(view.volume, axis, first.index, first.rect, index, rect, first.prompt_time)

    def segment_box3d(self, volume, axis: int, index_a: int, rect_a, index_b: int, rect_b,
                      prompt_time: str | None = None, settings=None) -> bool:
        """Segment everything between a box on slice ``index_a`` and one on ``index_b``.

        2D box models walk the slices in between (MedLSAM-style, rectangles interpolated; with
        progress, Cancel and Stop here) and the result is written at once, as propagation does.
        3D models get the enclosing 3D box and give a 3D candidate that clicks can refine.
        """
        if self._propagation_job is not None:
            self.message.emit("an AI job is running: wait for it or cancel it first", True)
            return False
        info = self.model_info()
        model_id = self.model_id
        prompt_time = prompt_time or now_iso()
        if info is not None and info.supports(PromptKind.BOX_3D) and (
            self.uses_3d_clicks() or not info.supports(PromptKind.BOX)
        ):
            self.clear_prompts()
            self.box3d = box3d_from_slice_boxes(axis, index_a, rect_a, index_b, rect_b)
            return self._run_3d(volume, prompt_time)
        try:
            if info is None or not info.is_2d or not info.supports(PromptKind.BOX):
                name = info.name if info is not None else model_id
                raise ValueError(f"{name} cannot segment a 3D box")
            from medviewer.ai.propagation import PropagationSettings, rects_between, start_box_segmentation

            stop = threading.Event()
            rects = rects_between(int(index_a), tuple(rect_a), int(index_b), tuple(rect_b))
            job = start_box_segmentation(self.engine, model_id, volume, rects, axis,
                                         settings or PropagationSettings.for_box(), stop=stop)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return False
        prompts = [prompt_to_physical(Prompt2D(box=tuple(rect)), volume.geometry, SlicePlane(axis, int(index)),
                                      prompt_time) for index, rect in ((index_a, rect_a), (index_b, rect_b))]
        self._watch_walk(job, stop, model_id, prompts, "3D box", "segmenting the 3D box…")
        return True

    def add_point_3d(self, view, point_lps, positive: bool = True) -> None:
        """A click for a 3D model, in voxel indices of the volume (any view, oblique included)."""
        volume = getattr(view, "volume", None)
        if volume is None:
            return
        ijk = np.asarray(volume.geometry.physical_to_index(point_lps), float)
        upper = np.asarray(volume.shape[::-1], float) - 0.5
        if np.any(ijk < -0.5) or np.any(ijk > upper):
            self._error("that click is outside the volume")
            return
        c3 = self.candidate3d
        if c3 is not None and (c3.volume is not volume or c3.model_id != self.model_id):
            self.clear_prompts()
        self.points3d.append(tuple(float(v) for v in ijk))
        self.labels3d.append(1 if positive else 0)
        self._run_3d(volume)

    def prompt3d(self) -> Prompt3D:
        return Prompt3D(box=self.box3d, points=tuple(self.points3d), labels=tuple(self.labels3d))

    def _run_3d(self, volume, prompt_time: str | None = None) -> bool:
        """Run the 3D model on all clicks so far; the previous result goes along so SAM-Med3D
        decodes only the new clicks on its cached crop. Clicks during a run are coalesced."""
        if self._propagation_job is not None:
            if getattr(self._propagation_job, "kind", "") == "predict_3d":
                self._job3d_dirty = True
                self._refresh_overlays(immediate=False)
                return True
            self.message.emit("an AI job is running: wait for it or cancel it first", True)
            return False
        prompt = self.prompt3d()
        if prompt.is_empty:
            self._refresh_overlays(immediate=False)
            return False
        model_id = self.model_id
        prompt_time = prompt_time or now_iso()
        c3 = self.candidate3d
        previous = c3.prediction if c3 is not None and c3.model_id == model_id and c3.volume is volume else None
        try:
            job = self.engine.predict_3d(model_id, volume, prompt, previous=previous)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return False
        self._propagation_job, self._stop_event, self._job3d_dirty = job, None, False
        self.propagation_running.emit(True)
        self._set_state("segmenting in 3D…")
        self._refresh_overlays(immediate=False)

        def progress(job, done, total, message):
            self.propagation_progress.emit(done, total, message)

        def done(job):
            self._propagation_job = None
            self.propagation_running.emit(False)
            self._set_state("ready")
            current = self.prompt3d()
            still_wanted = current.box == prompt.box and current.points[: len(prompt.points)] == prompt.points
            if job.status is JobStatus.DONE and model_id == self.model_id and still_wanted:
                prediction = job.result
                self.candidate3d = Candidate3D(np.asarray(prediction.mask, bool), prediction.score, prompt,
                                               prompt_time, model_id, prediction, volume)
                self._refresh_overlays(immediate=False)
                self.candidate_changed.emit(self.candidate3d)
            elif job.status is JobStatus.CANCELLED:
                self.message.emit("3D segmentation cancelled", False)
            elif job.status is JobStatus.FAILED:
                self._error(job.error or "3D segmentation failed")
            if self._job3d_dirty and not self._closed:
                self._run_3d(volume)

        self.bridge.watch(job, done, progress)
        return True

    def _accept_3d(self) -> bool:
        c3 = self.candidate3d
        volume = self.window.document.active_volume
        editor = self.editor()
        if c3 is None or editor is None or volume is None or c3.volume is not volume:
            self._error("the volume changed since the 3D result; nothing was written")
            return False
        box = Box.from_mask(c3.mask)
        if box is None:
            self.message.emit("the 3D result is empty: nothing to accept", True)
            return False
        label = self._active_label(editor)
        try:
            if label is None:
                label = editor.create_segment("AI segment").label
                editor.policy.active_label = label
            prompts = [prompt_to_physical(c3.prompt, volume.geometry, None, c3.prompt_time)]
            editor.accept_ai_result(c3.mask[box.slices], box, label, model=self.provenance(c3.model_id),
                                    prompts=prompts, parameters={"score": c3.score, "mode": "3d"})
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return False
        self.clear_prompts()
        self.message.emit(f"accepted the 3D result into segment {label}", False)
        return True

    def clear_prompts(self) -> None:
        self.box, self.points, self.labels = None, [], []
        self.candidate = None
        self.prompt_slice = None
        self._segment_dirty = False
        self._refining = False
        self.first_box = None
        self.points3d, self.labels3d, self.box3d = [], [], None
        self.candidate3d = None
        self._job3d_dirty = False
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

    def _paint_prompt(self) -> None:
        view = self.prompt_view
        if view is not None and not getattr(view, "_shut_down", False):
            view.request_render()

    def _refresh_overlays(self, immediate: bool = True, render: bool = True) -> None:
        """Redraw every view's overlay; ``immediate`` renders the prompt view now (the rest, and
        with False all views, repaint on their next coalesced render); ``render`` False only
        updates the lines, for the next render to show."""
        for view in self.views():
            if getattr(view, "_shut_down", False):
                continue
            where = view_where(view)
            content = self._overlay_content(view, where) if where is not None else None
            if content is None:
                if view in self._overlays and self._overlays[view].actor.GetVisibility():
                    self._overlays[view].clear()
                continue
            self._overlay(view).update(view.volume, *where, **content, render=render)
            if render and immediate and view is self.prompt_view:
                view.render_now()

    def _overlay_content(self, view, where) -> dict | None:
        """What this view's slice shows: the 2D prompt and candidate where they were drawn, the
        3D candidate's cross-section and the 3D clicks on every view, the 3D tool's boxes."""
        axis, index = where
        mask, box = None, None
        points: list[tuple[float, float]] = []
        labels: list[int] = []
        if view is self.prompt_view and where == self.prompt_slice:
            mask = self.candidate.mask if self._candidate_on(where) else None
            box, points, labels = self.box, list(self.points), list(self.labels)
        if axis == OBLIQUE:
            return None if mask is None and box is None and not points else \
                {"mask": mask, "box": box, "points": points, "labels": labels}
        c3 = self.candidate3d
        if mask is None and c3 is not None and c3.volume is view.volume and c3.mask.shape == view.volume.shape:
            section = take_slice(c3.mask, axis, index)
            mask = section if section.any() else None
        for point, label in zip(self.points3d, self.labels3d):
            on_slice = voxel_on_slice(axis, index, point)
            if on_slice is not None:
                points.append(on_slice)
                labels.append(label)
        first = self.first_box
        if box is None and first is not None and (first.axis, first.index) == (axis, index):
            box = first.rect
        if box is None and self.box3d is not None:
            low, high = self.box3d[:3], self.box3d[3:]
            depth = {0: 2, 1: 1, 2: 0}[axis]  # which of (i, j, k) runs across the slice
            if low[depth] - 0.5 <= index <= high[depth] + 0.5:
                column, row = {0: (0, 1), 1: (0, 2), 2: (1, 2)}[axis]
                box = (low[column], low[row], high[column], high[row])
        if mask is None and box is None and not points:
            return None
        return {"mask": mask, "box": box, "points": points, "labels": labels}

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
        if candidate is None and self.candidate3d is not None:
            return self._accept_3d()
        if candidate is None or not candidate.mask.any():
            self.message.emit("nothing to accept: draw a box first", True)
            return False
        volume = self.window.document.active_volume
        editor = self.editor()
        if editor is None or volume is None:
            return False
        label = self._active_label(editor)
        if candidate.axis == OBLIQUE:
            placed = plane_mask_to_volume(candidate.mask, candidate.index, volume.geometry, volume.shape)
            if placed is None:
                self.message.emit("the mask lies outside the volume: nothing to accept", True)
                return False
            mask3, box = placed
            prompts = [oblique_prompt_record(candidate.prompt, candidate.index, candidate.prompt_time)]
        else:
            prompts = [prompt_to_physical(candidate.prompt, volume.geometry, SlicePlane(candidate.axis, candidate.index),
                                          candidate.prompt_time)]
            box = slice_box(volume.shape, candidate.axis, candidate.index)
            mask3 = np.expand_dims(candidate.mask, candidate.axis)
        try:
            if label is None:
                label = editor.create_segment("AI segment").label
                editor.policy.active_label = label
            where = {"axis": "oblique", "plane_normal": list(candidate.index.normal),
                     "plane_position_mm": candidate.index.position} if candidate.axis == OBLIQUE else \
                {"axis": candidate.axis, "index": candidate.index}
            editor.accept_ai_result(mask3, box, label, model=self.provenance(candidate.model_id), prompts=prompts,
                                    parameters={"score": candidate.score, **where})
        except Exception as exc:  # noqa: BLE001 - EditRefused (locked segment) and friends
            self._error(str(exc))
            return False
        self.last_accepted = candidate
        self.clear_prompts()
        self.message.emit(f"accepted into segment {label}", False)
        return True

    # -- propagation and other long jobs -------------------------------------------------------
    def propagate(self, settings=None) -> bool:
        seed = self.candidate if self.candidate is not None else self.last_accepted
        if seed is None or not seed.mask.any():
            self.message.emit("accept or draw a mask first, then propagate it", True)
            return False
        if self._propagation_job is not None:
            return False
        if seed.axis == OBLIQUE:
            self.message.emit("propagation needs a view along the volume's slices (this mask is on an oblique one)",
                              True)
            return False
        volume = self.window.document.active_volume
        stop = threading.Event()
        try:
            from medviewer.ai.propagation import start_propagation

            job = start_propagation(self.engine, seed.model_id, volume, seed.axis, seed.index, seed.mask, settings,
                                    stop=stop)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return False
        prompts = [prompt_to_physical(seed.prompt, volume.geometry, SlicePlane(seed.axis, seed.index),
                                      seed.prompt_time)]
        self._watch_walk(job, stop, seed.model_id, prompts, "propagation", "propagating…")
        return True

    def _watch_walk(self, job, stop: threading.Event, model_id: str, prompts: list, what: str, state: str) -> None:
        """Progress, Cancel (nothing written) and Stop here (the slices so far are written)."""
        self._propagation_job, self._stop_event = job, stop
        self.propagation_running.emit(True)
        self._set_state(state)

        def progress(job, done, total, message):
            self.propagation_progress.emit(done, total, message)

        def done(job):
            self._propagation_job, self._stop_event = None, None
            self.propagation_running.emit(False)
            self._set_state("ready")
            if job.status is JobStatus.CANCELLED:
                self.message.emit(f"{what} cancelled; nothing was written", False)
            elif job.status is JobStatus.FAILED:
                self._error(job.error or f"{what} failed")
            else:
                self._accept_walk(job.result, model_id, prompts, what)

        self.bridge.watch(job, done, progress)

    def cancel_propagation(self) -> None:
        """Cancel the running long job; nothing it computed is written."""
        if self._propagation_job is not None:
            self._propagation_job.cancel()

    def stop_here(self) -> None:
        """End a propagation or 3D box after the current slice, keeping the slices done so far."""
        if self._stop_event is not None:
            self._stop_event.set()
            self.message.emit("stopping after the current slice…", False)

    @property
    def propagating(self) -> bool:
        return self._propagation_job is not None

    @property
    def stoppable(self) -> bool:
        """Whether the running job can stop early and keep its partial result."""
        return self._stop_event is not None

    def _accept_walk(self, result, model_id: str, prompts: list, what: str) -> None:
        volume = self.window.document.active_volume
        editor = self.editor()
        if editor is None or volume is None or result.mask.shape != volume.shape:
            self._error(f"the volume changed during the {what}; nothing was written")
            return
        box = Box.from_mask(result.mask)
        if box is None:
            self.message.emit(f"the {what} found nothing" + (" (stopped early)" if result.stopped_early else ""), True)
            return
        label = self._active_label(editor)
        key = "propagation" if what == "propagation" else "box_3d"
        try:
            if label is None:
                label = editor.create_segment("AI segment").label
                editor.policy.active_label = label
            editor.accept_ai_result(result.mask[box.slices], box, label, model=self.provenance(model_id),
                                    prompts=prompts,
                                    parameters={key: {"axis": result.axis, "start": result.start,
                                                      "slices": result.slices,
                                                      "stop_reasons": dict(result.stop_reasons),
                                                      "stopped_early": result.stopped_early}})
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self.candidate = None
        self.candidate_changed.emit(None)
        self._refresh_overlays(immediate=False)  # the views repaint once for the new labels anyway
        rng = result.slice_range
        done = f"slices {rng[0]}–{rng[1]}" if rng else "no slice"
        verb = "propagated to" if what == "propagation" else "3D box segmented on"
        suffix = " (stopped by you; the slices done were kept)" if result.stopped_early else ""
        self.message.emit(f"{verb} {done}{suffix}", False)

    # -- state and errors ---------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    def _error(self, text: str) -> None:
        self.last_error = text
        self._errors_reported += 1
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


__all__ = [
    "AiController",
    "AiPromptTool",
    "Candidate",
    "Candidate3D",
    "CandidateOverlay",
    "box3d_from_slice_boxes",
    "lps_to_pixel",
    "view_slice",
]
