"""The 3D view widget: segment surfaces, slice planes and volume rendering of the case.

Mouse (VTK trackball camera, as in Slicer): left drag rotates, right drag or the wheel
zooms, middle drag or Shift + left drag pans; R resets the camera to the anterior view.

Surfaces are a cache derived from the label map. Label edits arrive as
``LabelMap.changed(box)`` events; they are collected for :data:`SURFACE_DEBOUNCE_MS`
after the last one, then a background job rebuilds only the labels that were, or now
are, inside the edited boxes. A newer edit cancels the running job and its result is
dropped, so stale surfaces are never shown. Only the hand-over (attaching the finished
vtkPolyData to actors) and rendering happen on the GUI thread.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QElapsedTimer, QEvent, QThreadPool, QTimer, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

from medviewer.jobs import JobControl
from medviewer.model.events import Box
from medviewer.model.geometry import Geometry
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.scene3d import Scene3D
from medviewer.render.surfaces import LabelSurfaces, extract_label_surfaces, fit_display_budget, labels_in_region
from medviewer.render.volume_rendering import is_software_renderer, preset_names
from medviewer.ui import theme
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.workers import BackgroundJob

log = logging.getLogger(__name__)

#: Quiet time after the last label edit before surfaces are rebuilt (a brush stroke
#: sends many edits; rebuilding after each would waste the CPU the 2D views need).
SURFACE_DEBOUNCE_MS = 300

#: Frame rate asked of VTK for renders the program triggers (cursor moves, W/L, surface
#: updates) while the volume rendering is shown: its ray casting then lowers its sample
#: density to keep up, and a full-quality frame follows after :data:`REFINE_DELAY_MS`.
PROGRAMMATIC_UPDATE_RATE = 8.0
REFINE_DELAY_MS = 350

#: Triangles the shown surfaces may have in all when OpenGL is software-emulated (Mesa
#: llvmpipe). This view renders on the GUI thread whenever the cursor moves, and a frame of
#: the demo's 100k triangles took ~30 ms on two cores, ~17 ms at this budget, with no
#: difference to see on smooth-shaded organs. Surfaces over their share are decimated for
#: display only (exports use full surfaces); with a GPU nothing is.
SOFTWARE_TRIANGLE_BUDGET = 30_000

#: More edited boxes than this are merged into one before the job scans them.
_MAX_TRACKED_BOXES = 64

#: Surface jobs still running whose widget has gone: kept here (jobs only, never widgets)
#: until they finish, because the thread pool runs them after their owner was deleted.
_JOBS_IN_FLIGHT: dict[int, BackgroundJob] = {}
_job_ids = itertools.count(1)


def _release_job(job_id: int) -> None:
    job = _JOBS_IN_FLIGHT.pop(job_id, None)
    if job is not None:
        job.signals.deleteLater()


@dataclass
class _SurfaceWork:
    """Edits not yet reflected in the shown surfaces."""

    full: bool = False
    boxes: list[Box] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.full and not self.boxes

    def add(self, box: Box) -> None:
        if self.full:
            return
        self.boxes.append(box)
        if len(self.boxes) > _MAX_TRACKED_BOXES:
            merged = self.boxes[0]
            for other in self.boxes[1:]:
                merged = merged.union(other)
            self.boxes = [merged]


@dataclass
class _SurfaceJobResult:
    job_id: int
    edit_count: int
    full: bool
    rebuilt: set[int]
    found: LabelSurfaces
    #: Triangles of each rebuilt surface before any display decimation.
    full_triangles: dict[int, int] = field(default_factory=dict)
    #: The triangle budget the surfaces were fitted to (None: full resolution).
    budget: int | None = None


def _boxes_intersect(a: Box, b: Box) -> bool:
    return all(a0 < b1 and b0 < a1 for a0, a1, b0, b1 in zip(a.start, a.stop, b.start, b.stop))


def _rebuild_surfaces(
    control: JobControl,
    labels: np.ndarray,
    geometry: Geometry,
    work: _SurfaceWork,
    known_extents: dict[int, Box],
    known_counts: dict[int, int],
    job_id: int,
    edit_count: int,
    triangle_budget: int | None = None,
    other_triangles: dict[int, int] | None = None,
) -> _SurfaceJobResult:
    """Worker-thread body: decide which labels the edits touched and rebuild their surfaces.

    A label needs a new surface when it is inside an edited box now, or was before. "Now"
    is read from the boxes. "Before" is what the label map no longer says: a label whose
    last known extent meets an edited box but which is absent from every box now can only
    have lost voxels there, so it changed exactly when its voxel count (counted inside
    its old extent, where all of it still is) went down. A label's voxels can only be in
    its old extent or the edited boxes, so the search for its new extent stays there.
    """
    if work.full:
        found = extract_label_surfaces(labels, geometry, None, control=control)
        result = _SurfaceJobResult(job_id, edit_count, True, set(found.extents), found)
        return _fitted(result, labels, geometry, triangle_budget, {}, control)
    touched: set[int] = set()
    nearby: set[int] = set()
    edited = work.boxes[0]
    for box in work.boxes:
        control.check()
        touched |= labels_in_region(labels, box)
        nearby |= {label for label, extent in known_extents.items() if _boxes_intersect(extent, box)}
        edited = edited.union(box)
    for label in sorted(nearby - touched):
        control.check()
        extent = known_extents[label]
        if int(np.count_nonzero(labels[extent.slices] == label)) != known_counts.get(label):
            touched.add(label)
    regions = {label: edited.union(known_extents.get(label)) for label in touched}
    found = extract_label_surfaces(labels, geometry, sorted(touched), control=control, search_regions=regions)
    others = {label: n for label, n in (other_triangles or {}).items() if label not in touched}
    return _fitted(_SurfaceJobResult(job_id, edit_count, False, touched, found), labels, geometry, triangle_budget, others, control)


def _fitted(
    result: _SurfaceJobResult, labels: np.ndarray, geometry: Geometry, budget: int | None,
    others: dict[int, int], control: JobControl,
) -> _SurfaceJobResult:
    """Record each surface's full size, then lighten them for display when there is a budget."""
    found = result.found
    result.full_triangles = {label: surface.GetNumberOfPolys() for label, surface in found.surfaces.items()}
    result.budget = budget
    if budget is not None:
        found.surfaces = fit_display_budget(found, labels, geometry, budget, others, control)
    return result


class View3D(QWidget):
    """3D view of the case: surfaces in segment colours, slice planes, volume rendering."""

    surfaces_updated = Signal()  # after surfaces were rebuilt and rendered
    #: The display options changed (from the view's own header or the API), so a host's
    #: menu actions can follow: (enabled, preset name) and (visible).
    volume_rendering_changed = Signal(bool, str)
    slice_planes_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.scene = Scene3D()
        self._volume: Volume | None = None
        self._labelmap: LabelMap | None = None
        self._segments: SegmentTable | None = None
        self._bridges: list[EventBridge] = []
        self._pending = _SurfaceWork()
        self._edit_count = 0
        self._label_extents: dict[int, Box] = {}
        self._label_counts: dict[int, int] = {}
        self._job: BackgroundJob | None = None
        self._job_id = 0
        self._camera_fitted = False
        self._shut_down = False
        #: Labels whose surfaces the last applied job rebuilt (diagnostics and tests).
        self.last_rebuilt_labels: set[int] = set()
        self._pool = QThreadPool.globalInstance()

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SURFACE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start_surface_job)
        self._refine = QTimer(self)
        self._refine.setSingleShot(True)
        self._refine.setInterval(REFINE_DELAY_MS)
        self._refine.timeout.connect(self._render_full_quality)
        # Renders the program asks for (cursor, W/L, surfaces) are spaced by twice the
        # last frame's cost, so a slow frame (software OpenGL, huge meshes) cannot take
        # more than a third of the GUI thread the 2D views share with this one.
        self._render_throttle = QTimer(self)
        self._render_throttle.setSingleShot(True)
        self._render_throttle.timeout.connect(self._flush_render)
        self._render_pending = False
        self._since_last_render = QElapsedTimer()
        self._since_last_render.start()
        self._last_render_ms = 0.0
        self._render_clock = QElapsedTimer()
        #: Software OpenGL (None until the first frame tells): surfaces then fit a budget.
        self._software_gl: bool | None = None
        self._full_triangles: dict[int, int] = {}
        self._unbudgeted = False  # some shown surface was built before the budget was known

        self._header = self._build_header()
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.render_window = self.vtk_widget.GetRenderWindow()
        # 4x MSAA made each frame 3-6x slower on software OpenGL (Mesa llvmpipe, 76-148 ms
        # vs ~25 ms) and the 2x2 layout repaints this view often; smooth shading hides most
        # aliasing on organ surfaces.
        self.render_window.SetMultiSamples(0)
        self.render_window.AddRenderer(self.scene.renderer)
        self.interactor = self.render_window.GetInteractor()
        self._style = vtkInteractorStyleTrackballCamera()
        self.interactor.SetInteractorStyle(self._style)
        # An observer on the style's CharEvent replaces VTK's default key handling, whose
        # 'e' and 'q' would end the application and 'w' would turn surfaces to wireframe.
        self._observer_tags = [
            (self._style, self._style.AddObserver("CharEvent", self._on_key)),
            (self.render_window, self.render_window.AddObserver("StartEvent", self._on_render_start)),
            (self.render_window, self.render_window.AddObserver("EndEvent", self._on_render_end)),
            (self._style, self._style.AddObserver("StartInteractionEvent", self._on_user_moves_camera)),
        ]
        #: True until the user moves the camera: resizes then refit the reset view.
        self._camera_follows_size = True
        self.vtk_widget.installEventFilter(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._header)
        layout.addWidget(self.vtk_widget, 1)
        self.vtk_widget.Initialize()
        self._orientation_marker = self._build_orientation_marker()
        self.scene.reset_camera()

    # -- construction ---------------------------------------------------------------------
    def _build_header(self) -> QFrame:
        """Slim view bar: name, surface status and the 3D display toggles."""
        header = QFrame(self)
        header.setObjectName("view3dHeader")
        header.setStyleSheet(f"#view3dHeader {{ background: {theme.PANEL}; border-bottom: 2px solid {theme.ACCENT}; }}")
        row = QHBoxLayout(header)
        row.setContentsMargins(8, 3, 8, 3)
        row.setSpacing(6)
        tag = QLabel("3D", header)
        tag.setStyleSheet(f"background: {theme.ACCENT}; color: white; font-weight: 600; padding: 1px 8px; border-radius: 3px;")
        tag.setToolTip("3D view: left drag rotates, right drag or wheel zooms, middle drag pans, R resets")
        self.status_label = QLabel("", header)
        self.status_label.setStyleSheet(f"color: {theme.MUTED};")

        self.reset_button = QToolButton(header)
        self.reset_button.setIcon(theme.icon("mdi6.camera-retake-outline"))
        self.reset_button.setToolTip("Reset the camera: anterior view, whole volume (R)")
        self.reset_button.clicked.connect(self.reset_camera)

        self.planes_button = QToolButton(header)
        self.planes_button.setIcon(theme.icon("mdi6.layers-outline"))
        self.planes_button.setCheckable(True)
        self.planes_button.setChecked(True)
        self.planes_button.setToolTip("Show the three slice planes in 3D")
        self.planes_button.toggled.connect(self.set_slice_planes_visible)

        self.texture_button = QToolButton(header)
        self.texture_button.setIcon(theme.icon("mdi6.texture-box"))
        self.texture_button.setCheckable(True)
        self.texture_button.setChecked(self.scene.planes_textured)
        self.texture_button.setToolTip("Show the scan and labels on the slice planes (otherwise only their outlines)")
        self.texture_button.toggled.connect(self.set_slice_planes_textured)

        self.volume_button = QToolButton(header)
        self.volume_button.setIcon(theme.icon("mdi6.cube-scan"))
        self.volume_button.setCheckable(True)
        self.volume_button.setToolTip("Volume rendering of the scan")
        self.volume_button.toggled.connect(lambda on: self.set_volume_rendering(on, self.preset_combo.currentText() or None))

        self.preset_combo = QComboBox(header)
        self.preset_combo.addItems(preset_names())
        self.preset_combo.setToolTip("Volume rendering preset")
        self.preset_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.preset_combo.currentTextChanged.connect(
            lambda name: self.set_volume_rendering(self.volume_button.isChecked(), name) if name else None
        )

        row.addWidget(tag)
        row.addWidget(self.status_label, 1)
        for widget in (self.planes_button, self.texture_button, self.volume_button, self.preset_combo, self.reset_button):
            row.addWidget(widget)
        return header

    def _build_orientation_marker(self) -> vtkOrientationMarkerWidget:
        """A cube in the corner labelled with patient directions (world = LPS)."""
        cube = vtkAnnotatedCubeActor()
        cube.SetXPlusFaceText("L")
        cube.SetXMinusFaceText("R")
        cube.SetYPlusFaceText("P")
        cube.SetYMinusFaceText("A")
        cube.SetZPlusFaceText("S")
        cube.SetZMinusFaceText("I")
        cube.SetFaceTextScale(0.6)
        cube.SetZFaceTextRotation(90.0)  # "S" upright when seen from the front and above
        cube.GetCubeProperty().SetColor(0.26, 0.30, 0.36)
        cube.GetCubeProperty().SetSpecular(0.2)
        cube.GetTextEdgesProperty().SetColor(0.15, 0.17, 0.2)
        cube.GetTextEdgesProperty().SetLineWidth(1.0)
        for face, color in (
            (cube.GetXPlusFaceProperty(), (0.93, 0.84, 0.30)),  # L/R: sagittal yellow
            (cube.GetXMinusFaceProperty(), (0.93, 0.84, 0.30)),
            (cube.GetYPlusFaceProperty(), (0.55, 0.80, 0.40)),  # A/P: coronal green
            (cube.GetYMinusFaceProperty(), (0.55, 0.80, 0.40)),
            (cube.GetZPlusFaceProperty(), (0.98, 0.45, 0.35)),  # S/I: axial red
            (cube.GetZMinusFaceProperty(), (0.98, 0.45, 0.35)),
        ):
            face.SetColor(*color)
            face.SetInterpolationToFlat()
        marker = vtkOrientationMarkerWidget()
        marker.SetOrientationMarker(cube)
        marker.SetInteractor(self.interactor)
        marker.SetViewport(0.0, 0.0, 0.16, 0.16 * 1.4)
        marker.SetEnabled(1)
        marker.InteractiveOff()
        self._marker_cube = cube
        return marker

    # -- content --------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        return self._volume

    @property
    def busy(self) -> bool:
        """True while edited labels wait for, or are in, a surface rebuild."""
        return self._debounce.isActive() or self._job is not None

    def set_volume(self, volume: Volume | None) -> None:
        """Scan for the slice planes and volume rendering; a new scan resets the camera."""
        if self._shut_down:
            return
        is_new = volume is not self._volume
        self._volume = volume
        self.scene.set_volume(volume)
        self.volume_button.setEnabled(volume is not None)
        self.preset_combo.setEnabled(volume is not None)
        if volume is not None and self.scene.volume_rendering_preset:
            self._show_preset(self.scene.volume_rendering_preset)
        if is_new and volume is not None:
            self.reset_camera()
        self.request_render()

    def set_segmentation(self, labelmap: LabelMap | None, segments: SegmentTable | None) -> None:
        """Follow ``labelmap`` and ``segments``: surfaces rebuilt in the background on edits."""
        if self._shut_down:
            return
        self._detach_bridges()
        self._cancel_job()
        self._debounce.stop()
        self._labelmap = labelmap
        self._segments = segments
        self._label_extents = {}
        self._label_counts = {}
        self._full_triangles = {}
        self._pending = _SurfaceWork()
        self.scene.clear_surfaces()
        self.scene.set_segments(segments)
        if labelmap is not None:
            self.scene.set_plane_labels(labelmap.array, labelmap.geometry)
        else:
            self.scene.set_plane_labels(None, None)
        if labelmap is not None:
            self._bridges.append(EventBridge(labelmap.changed, self._on_labels_changed, self))
            self._pending.full = True
            self._edit_count += 1
            self._start_surface_job()  # the first surfaces need no debounce
        if segments is not None:
            self._bridges.append(EventBridge(segments.changed, self._on_segments_changed, self))
        self._update_status()
        self.request_render()

    def _detach_bridges(self) -> None:
        for bridge in self._bridges:
            bridge.detach()
            bridge.deleteLater()
        self._bridges.clear()

    def _on_labels_changed(self, box: Box | None = None) -> None:
        if self._labelmap is None or self._shut_down:
            return
        self._pending.add(box or Box.full(self._labelmap.shape))
        self._edit_count += 1
        self._cancel_job()  # its result would be stale anyway; free the CPU now
        self._debounce.start()  # (re)start: rebuild once the edits pause
        self._update_status()

    def _on_segments_changed(self, label: int | None = None) -> None:
        """Colour / visibility / removal of a segment: restyle, no surface rebuild."""
        if self._shut_down:
            return
        self.scene.update_segment_display(label)
        self.request_render()

    # -- surface jobs ---------------------------------------------------------------------
    def _start_surface_job(self) -> None:
        if self._shut_down or self._labelmap is None or self._pending.empty:
            self._update_status()
            return
        self._cancel_job()
        self._job_id = next(_job_ids)
        work = _SurfaceWork(self._pending.full, list(self._pending.boxes))
        function = functools.partial(
            _rebuild_surfaces,
            labels=self._labelmap.array,
            geometry=self._labelmap.geometry,
            work=work,
            known_extents=dict(self._label_extents),
            known_counts=dict(self._label_counts),
            job_id=self._job_id,
            edit_count=self._edit_count,
            triangle_budget=self.triangle_budget,
            other_triangles=dict(self._full_triangles),
        )
        job = BackgroundJob(function, "Building 3D surfaces")
        job.signals.succeeded.connect(self._on_surfaces_ready)
        job.signals.failed.connect(self._on_surface_job_failed)
        job.signals.finished.connect(functools.partial(QTimer.singleShot, 0, functools.partial(_release_job, self._job_id)))
        _JOBS_IN_FLIGHT[self._job_id] = job
        self._job = job
        self._pool.start(job)
        self._update_status()

    def _cancel_job(self) -> None:
        """Stop the running job and cut it off from this view: its result is never applied."""
        job, self._job = self._job, None
        if job is None:
            return
        job.cancel()
        for signal, slot in ((job.signals.succeeded, self._on_surfaces_ready), (job.signals.failed, self._on_surface_job_failed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    def _on_surface_job_failed(self, error: BaseException) -> None:
        if self._shut_down or self._job is None:
            return
        log.error("building 3D surfaces failed", exc_info=error)
        self._job = None
        self._pending = _SurfaceWork()  # do not retry in a loop; the next edit tries again
        self._update_status("Surface update failed")

    def _on_surfaces_ready(self, result: _SurfaceJobResult) -> None:
        if self._shut_down or result.job_id != self._job_id or self._job is None:
            return  # superseded: a newer edit or segmentation arrived meanwhile
        self._job = None
        if result.edit_count != self._edit_count:
            return  # edits came in while it ran; the debounce timer will start a fresh job
        self._pending = _SurfaceWork()
        found = result.found
        if result.full:
            self._full_triangles = {}
            self._unbudgeted = False
            self._label_extents = dict(found.extents)
            self._label_counts = dict(found.voxel_counts)
            for label in set(self.scene.surface_labels) - set(found.surfaces):
                self.scene.set_surface(label, None)
        else:
            for label in result.rebuilt:
                if label in found.extents:
                    self._label_extents[label] = found.extents[label]
                    self._label_counts[label] = found.voxel_counts[label]
                else:
                    self._label_extents.pop(label, None)
                    self._label_counts.pop(label, None)
        for label in result.rebuilt:
            self.scene.set_surface(label, found.surfaces.get(label))
            if label in result.full_triangles:
                self._full_triangles[label] = result.full_triangles[label]
            else:
                self._full_triangles.pop(label, None)
        self._unbudgeted |= result.budget is None
        self._refresh_plane_labels()
        self.last_rebuilt_labels = set(result.rebuilt)
        if not self._camera_fitted and self._volume is None:
            self.reset_camera()
        self._update_status()
        self.render_now()
        self.surfaces_updated.emit()
        self._refit_to_budget()

    def _refit_to_budget(self) -> None:
        """Rebuild all surfaces if some were made at full size before the first frame told us
        the OpenGL is software and the scene is over its budget."""
        budget = self.triangle_budget
        if budget is None or not self._unbudgeted or self.busy or self._shut_down:
            return
        if sum(self._full_triangles.values()) > budget:
            self._pending = _SurfaceWork(full=True)
            self._edit_count += 1
            self._debounce.start()

    def _refresh_plane_labels(self) -> None:
        """Bring the planes' label overlay up to date together with the surfaces.

        Done when surfaces are applied rather than on every brush event, so painting in
        2D never waits for a 3D frame.
        """
        if self._labelmap is None:
            return
        if self.scene.plane_labels_source() is not self._labelmap.array:
            # The label map replaced its array (e.g. grew to uint16): wrap the new one.
            self.scene.set_plane_labels(self._labelmap.array, self._labelmap.geometry)
        else:
            self.scene.plane_labels_modified()

    def _update_status(self, message: str | None = None) -> None:
        if message is None:
            message = "Updating surfaces\u2026" if self.busy else ""
        self.status_label.setText(message)

    def surface_labels(self) -> list[int]:
        """Labels that currently have a surface in the scene (visible or hidden)."""
        return self.scene.surface_labels

    # -- planes, window, volume rendering -------------------------------------------------
    def set_cursor(self, point_lps: tuple[float, float, float]) -> None:
        """Move the axial, coronal and sagittal planes to pass through ``point_lps``."""
        if self._shut_down:
            return
        self.scene.set_cursor(point_lps)
        self.request_render()

    def set_window_level(self, center: float, width: float) -> None:
        if self._shut_down:
            return
        self.scene.set_window_level(center, width)
        self.request_render()

    def set_slice_planes_visible(self, visible: bool) -> None:
        if self._shut_down:
            return
        changed = bool(visible) != self.scene.planes_visible
        self.scene.set_planes_visible(visible)
        self.planes_button.blockSignals(True)
        self.planes_button.setChecked(bool(visible))
        self.planes_button.blockSignals(False)
        self.request_render()
        if changed:
            self.slice_planes_changed.emit(bool(visible))

    def set_slice_planes_textured(self, textured: bool) -> None:
        """Draw the scan and the label overlay on the planes (True), or only their outlines."""
        if self._shut_down:
            return
        self.scene.set_planes_textured(textured)
        self.texture_button.blockSignals(True)
        self.texture_button.setChecked(bool(textured))
        self.texture_button.blockSignals(False)
        self.request_render()

    def set_volume_rendering(self, enabled: bool, preset: str | None = None) -> None:
        """Show or hide the volume rendering; ``preset`` picks its transfer function."""
        if self._shut_down:
            return
        if enabled:
            if self._software_gl is None:
                self._software_gl = is_software_renderer(self.render_window)
            self.scene.gpu_volume_rendering = not self._software_gl
        before = (self.scene.volume_rendering_enabled, self.scene.volume_rendering_preset)
        self.scene.set_volume_rendering(enabled, preset)
        self.volume_button.blockSignals(True)
        self.volume_button.setChecked(bool(enabled))
        self.volume_button.blockSignals(False)
        if self.scene.volume_rendering_preset:
            self._show_preset(self.scene.volume_rendering_preset)
        self.request_render()
        after = (self.scene.volume_rendering_enabled, self.scene.volume_rendering_preset)
        if after != before:
            self.volume_rendering_changed.emit(after[0], after[1] or "")

    def _show_preset(self, name: str) -> None:
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentText(name)
        self.preset_combo.blockSignals(False)

    def volume_rendering_presets(self) -> list[str]:
        return preset_names()

    # -- camera and rendering -------------------------------------------------------------
    def reset_camera(self) -> None:
        """Anterior view with superior up and the whole volume in view."""
        if self._shut_down:
            return
        geometry = self._labelmap.geometry if self._labelmap is not None else None
        self._sync_renderer_size()
        self.scene.reset_camera(geometry)
        self._camera_fitted = self._volume is not None or bool(self.scene.surface_labels)
        self._camera_follows_size = True
        self.request_render()

    def _on_user_moves_camera(self, *_args) -> None:
        self._camera_follows_size = False

    def eventFilter(self, watched, event) -> bool:
        if (
            watched is self.vtk_widget
            and event.type() == QEvent.Type.Resize
            and self._camera_follows_size
            and not self._shut_down
        ):
            QTimer.singleShot(0, self._refit_after_resize)
        return super().eventFilter(watched, event)

    def _refit_after_resize(self) -> None:
        if self._camera_follows_size and not self._shut_down:
            self.reset_camera()

    def _sync_renderer_size(self) -> None:
        """Make the renderer know the widget's size before the first paint (camera fit)."""
        ratio = self.vtk_widget.devicePixelRatioF() or 1.0
        width, height = int(self.vtk_widget.width() * ratio), int(self.vtk_widget.height() * ratio)
        if width > 1 and height > 1 and tuple(self.render_window.GetSize()) != (width, height):
            self.render_window.SetSize(width, height)

    def request_render(self) -> None:
        """Schedule a render; requests in quick succession are merged into one frame.

        With volume rendering on, the paint is a fast lower-quality frame and the full
        frame follows once requests pause, so scrolling the 2D cursor stays fluid.
        """
        if self._shut_down:
            return
        self._render_pending = True
        if not self._render_throttle.isActive():
            wait_ms = 2.0 * self._last_render_ms - self._since_last_render.elapsed()
            self._render_throttle.start(int(max(0.0, min(wait_ms, 1000.0))))

    def _flush_render(self) -> None:
        if self._shut_down or not self._render_pending:
            return
        self._render_pending = False
        self.scene.reset_clipping_range()
        if self.scene.volume_rendering_shown:
            self.render_window.SetDesiredUpdateRate(PROGRAMMATIC_UPDATE_RATE)
            self._refine.start()
        self.vtk_widget.update()

    def _on_render_start(self, *_args) -> None:
        self._render_clock.start()

    def _on_render_end(self, *_args) -> None:
        if self._render_clock.isValid():
            self._last_render_ms = float(self._render_clock.elapsed())
        self._since_last_render.restart()
        if self._software_gl is None:
            self._software_gl = is_software_renderer(self.render_window)
            self._refit_to_budget()

    @property
    def triangle_budget(self) -> int | None:
        """Triangles the shown surfaces are held to (software OpenGL), None for no limit."""
        return SOFTWARE_TRIANGLE_BUDGET if self._software_gl else None

    def _render_full_quality(self) -> None:
        if not self._shut_down:
            self.render_window.SetDesiredUpdateRate(self.interactor.GetStillUpdateRate())
            self.vtk_widget.update()

    def render_now(self) -> None:
        """Render at full quality immediately (screenshots, tests)."""
        if not self._shut_down and self.vtk_widget.isVisible():
            self._refine.stop()
            self._render_throttle.stop()
            self._render_pending = False
            self.scene.reset_clipping_range()
            self.render_window.SetDesiredUpdateRate(self.interactor.GetStillUpdateRate())
            self.render_window.Render()

    def grab_view(self) -> QImage:
        """What is on screen in the VTK area (QWidget.grab cannot read OpenGL content)."""
        self.render_now()
        screen = self.vtk_widget.screen() or QGuiApplication.primaryScreen()
        return screen.grabWindow(int(self.vtk_widget.winId())).toImage()

    def _on_key(self, *_args) -> None:
        key = self.interactor.GetKeySym() or ""
        if key.lower() == "r":
            self.reset_camera()

    # -- teardown -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop listening, drop any running job's result, release the OpenGL context."""
        if self._shut_down:
            return
        self._detach_bridges()
        self._debounce.stop()
        self._refine.stop()
        self._render_throttle.stop()
        self._cancel_job()  # it keeps running to its next check, then is released
        self._shut_down = True
        self._orientation_marker.SetEnabled(0)
        self._orientation_marker.SetInteractor(None)
        for owner, tag in self._observer_tags:
            owner.RemoveObserver(tag)
        self._observer_tags.clear()
        self.vtk_widget.removeEventFilter(self)
        self.scene.release()
        self.vtk_widget.Finalize()
        self.render_window.RemoveRenderer(self.scene.renderer)
