"""The VTK pipeline of one 2D slice view: resliced scan, label overlay, crosshair, text.

:class:`SliceRenderer` owns a ``vtkRenderer`` and knows nothing of Qt; the widget hosting
it forwards gestures as plain method calls. Scan and labels are shared zero-copy with the
model (:class:`~medviewer.render.vtk_arrays.SharedImage`) and each is cut by a
``vtkImageReslice`` into the one 2D slice the view shows, in physical space
(:class:`~medviewer.render.mpr.SliceGeometry`): oblique volumes display true anatomical
planes with the right aspect. Labels are always sampled nearest-neighbour.

World coordinates of the view are the plane coordinates ``x = right . p``, ``y = down . p``
(mm); the camera looks along +z with view-up -y, so x grows to the right of the screen and
y downwards, and row 0 of a resliced image is the top of the view.
"""

from __future__ import annotations

import math

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonCore import vtkPoints, vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkImagingCore import vtkImageReslice
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkImageProperty,
    vtkImageSlice,
    vtkImageSliceMapper,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkTextActor,
)

import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering backend)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)

from medviewer.model.events import Box
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.label_colors import DEFAULT_LABEL_ALPHA, build_label_colors, label_table_size, make_lookup_table
from medviewer.render.label_outline import label_outline
from medviewer.render.mpr import PATIENT_AXIS, SCREEN_AXES, SliceGeometry, ViewOrientation, snap_cursor, volume_centre
from medviewer.render.orientation import OrientationLetters
from medviewer.render.readout import format_slice_counter
from medviewer.render.vtk_arrays import SharedImage, image_scalars
from medviewer.render.window_level import WindowLevel, format_window_level
from medviewer.render.window_presets import initial_window

#: Where each overlay text sits: (x, y) in normalised viewport coordinates, justification.
_TEXT_PLACES = {
    "lower_left": ((0.01, 0.012), "left", "bottom"),
    "lower_right": ((0.99, 0.012), "right", "bottom"),
    "upper_left": ((0.01, 0.988), "left", "top"),
    "upper_right": ((0.99, 0.988), "right", "top"),
    "left": ((0.008, 0.5), "left", "center"),
    "right": ((0.992, 0.5), "right", "center"),
    "top": ((0.5, 0.99), "center", "top"),
    "bottom": ((0.5, 0.01), "center", "bottom"),
    "message": ((0.5, 0.5), "center", "center"),
}
CORNERS = ("lower_left", "lower_right", "upper_left", "upper_right")
EDGES = ("left", "right", "top", "bottom")

#: Fraction of free space around the image when it is fitted to the view.
FIT_MARGIN = 1.03

TEXT_COLOR = (0.86, 0.88, 0.90)
LETTER_COLOR = (1.0, 0.80, 0.35)
MESSAGE_COLOR = (0.55, 0.58, 0.62)
TEXT_SIZE = 13
LETTER_SIZE = 16

#: Slicer's colour code of each view (also used for the crosshair lines of its plane).
VIEW_COLORS: dict[ViewOrientation, tuple[float, float, float]] = {
    ViewOrientation.AXIAL: (0.86, 0.30, 0.26),
    ViewOrientation.SAGITTAL: (0.93, 0.82, 0.30),
    ViewOrientation.CORONAL: (0.40, 0.74, 0.36),
}

#: Distance (mm) the label layer floats in front of the scan; the crosshair is further out.
LABEL_LAYER_OFFSET = 0.25

#: Outlines are thin, so they get more opacity than filled labels at the same slider value.
OUTLINE_OPACITY_GAIN = 2.0


class _ResliceLayer:
    """SharedImage -> vtkImageReslice (one 2D slice) -> vtkImageSliceMapper -> vtkImageSlice."""

    def __init__(self, nearest_only: bool):
        self.nearest_only = nearest_only
        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToNearestNeighbor()
        self.reslice.AutoCropOutputOff()
        self.axes = vtkMatrix4x4()
        self.reslice.SetResliceAxes(self.axes)
        self.mapper = vtkImageSliceMapper()
        self.mapper.BorderOn()  # draw whole pixels up to the image edge
        self.property = vtkImageProperty()
        self.property.SetInterpolationTypeToNearest()
        self.actor = vtkImageSlice()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        self.actor.PickableOff()
        self.shared: SharedImage | None = None
        self.mapper.SetInputConnection(self.reslice.GetOutputPort())

    def attach(self, shared: SharedImage | None, background: float = 0.0) -> None:
        self.shared = shared
        if shared is None:
            self.reslice.RemoveAllInputs()
            return
        self.reslice.SetInputData(shared.image)
        self.reslice.SetBackgroundLevel(float(background))

    def set_sampling(self, plan: SliceGeometry) -> None:
        (x0, y0), (sx, sy), (nx, ny) = plan.origin_2d, plan.pixel_spacing, plan.size
        self.reslice.SetOutputOrigin(x0, y0, 0.0)
        self.reslice.SetOutputSpacing(sx, sy, 1.0)
        self.reslice.SetOutputExtent(0, nx - 1, 0, ny - 1, 0, 0)

    def set_matrix(self, matrix: np.ndarray) -> None:
        for row in range(4):
            for column in range(4):
                self.axes.SetElement(row, column, float(matrix[row, column]))
        self.reslice.Modified()

    def set_interpolation(self, linear: bool) -> None:
        if self.nearest_only:
            return
        if linear:
            self.reslice.SetInterpolationModeToLinear()
            self.property.SetInterpolationTypeToLinear()
        else:
            self.reslice.SetInterpolationModeToNearestNeighbor()
            self.property.SetInterpolationTypeToNearest()

    def output_array(self) -> np.ndarray:
        """The current 2D slice as (rows, columns), row 0 at the top of the view."""
        self.reslice.Update()
        return image_scalars(self.reslice.GetOutput())


class SliceRenderer:
    """One patient-axis view (axial, coronal or sagittal) of a volume and its labels."""

    def __init__(self, orientation: ViewOrientation | str = ViewOrientation.AXIAL, renderer: vtkRenderer | None = None):
        self.orientation = ViewOrientation(orientation)
        self.renderer = renderer if renderer is not None else vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.volume: Volume | None = None
        self.labelmap: LabelMap | None = None
        self.segments: SegmentTable | None = None
        self.plan: SliceGeometry | None = None
        self.cursor = np.zeros(3)
        self.slice_position = 0.0
        self.window = WindowLevel(0.0, 1.0)
        self.label_alpha = DEFAULT_LABEL_ALPHA
        self.labels_visible = True
        self.outline_mode = False
        self.linear_interpolation = True
        self.crosshair_visible = True
        #: (x0, x1, y0, y1) pixel rectangle of the shown slice that holds labels, or None.
        self.label_extent: tuple[int, int, int, int] | None = None
        self.letters: OrientationLetters | None = None
        #: Boxes that made this view re-slice its labels (tests, diagnostics).
        self.label_uploads: list[Box] = []

        self._scan = _ResliceLayer(nearest_only=False)
        self._scan.set_interpolation(True)
        self._labels = _ResliceLayer(nearest_only=True)
        self._labels.property.SetUseLookupTableScalarRange(True)
        self._outline_image = vtkImageData()
        self._outline_buffer: np.ndarray | None = None
        self._outline_scalars = None
        # The overlay floats just in front of the scan (the camera looks along +z from -z).
        # Two plain image actors render measurably faster than a vtkImageStack.
        self._labels.actor.SetPosition(0.0, 0.0, -LABEL_LAYER_OFFSET)
        self._images_shown = False

        self._crosshair_points = vtkPoints()
        self._crosshair_points.SetNumberOfPoints(4)
        self._crosshair = self._make_crosshair()
        # One fixed-size text actor per place: changing the slice counter re-renders only
        # that string (vtkCornerAnnotation re-fits every corner and costs ~8 ms a frame).
        self._texts = {name: self._make_text(name) for name in _TEXT_PLACES}
        #: Shown in the middle of the view while no volume is open.
        self.empty_message = ""
        self.renderer.GetActiveCamera().ParallelProjectionOn()

    # -- construction helpers ------------------------------------------------------------
    def _make_text(self, place: str) -> vtkTextActor:
        (x, y), horizontal, vertical = _TEXT_PLACES[place]
        actor = vtkTextActor()
        actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        actor.GetPositionCoordinate().SetValue(x, y)
        prop = actor.GetTextProperty()
        letter = place in EDGES
        prop.SetFontSize(LETTER_SIZE if letter else TEXT_SIZE + (2 if place == "message" else 0))
        prop.SetColor(*(LETTER_COLOR if letter else (MESSAGE_COLOR if place == "message" else TEXT_COLOR)))
        prop.SetBold(letter)
        prop.SetFontFamilyToArial()
        prop.ShadowOn()
        prop.SetShadowOffset(1, -1)
        prop.SetJustification({"left": 0, "center": 1, "right": 2}[horizontal])  # VTK_TEXT_LEFT/CENTERED/RIGHT
        prop.SetVerticalJustification({"bottom": 0, "center": 1, "top": 2}[vertical])
        actor.SetInput("")
        actor.PickableOff()
        self.renderer.AddViewProp(actor)
        return actor

    def _make_crosshair(self) -> vtkActor:
        """Two lines through the cursor, each in the colour of the view whose plane it is."""
        lines = vtkCellArray()
        lines.InsertNextCell(2, (0, 1))  # vertical
        lines.InsertNextCell(2, (2, 3))  # horizontal
        colors = vtkUnsignedCharArray()
        colors.SetNumberOfComponents(3)
        vertical, horizontal = self._crosshair_colors()
        for color in (vertical, horizontal):
            colors.InsertNextTuple3(*(round(c * 255) for c in color))
        data = vtkPolyData()
        data.SetPoints(self._crosshair_points)
        data.SetLines(lines)
        data.GetCellData().SetScalars(colors)
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(data)
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetLineWidth(1.0)
        actor.GetProperty().LightingOff()
        # Opaque on purpose: a translucent line puts the view through VTK's translucent
        # pass, which costs more than the whole scan on software OpenGL.
        actor.GetProperty().SetOpacity(1.0)
        actor.PickableOff()
        actor.VisibilityOff()
        self.renderer.AddActor(actor)
        self._crosshair_data = data
        return actor

    def _crosshair_colors(self):
        """Vertical line = the other view whose plane is vertical on screen, and so on."""
        right = np.asarray(SCREEN_AXES[self.orientation][0])
        others = [o for o in ViewOrientation if o is not self.orientation]
        vertical = max(others, key=lambda o: abs(right[PATIENT_AXIS[o]]))
        horizontal = next(o for o in others if o is not vertical)
        return VIEW_COLORS[vertical], VIEW_COLORS[horizontal]

    # -- content ---------------------------------------------------------------------------
    @property
    def has_volume(self) -> bool:
        return self.volume is not None

    @property
    def num_slices(self) -> int:
        return self.plan.slice_count if self.plan is not None else 0

    @property
    def slice_index(self) -> int:
        return self.plan.slice_index(self.slice_position) if self.plan is not None else 0

    @property
    def intensity_span(self) -> float:
        if self.volume is None:
            return 1.0
        low, high = self.volume.intensity_range()
        return max(high - low, 1e-6)

    def set_volume(
        self,
        volume: Volume | None,
        labelmap: LabelMap | None = None,
        segments: SegmentTable | None = None,
        cursor=None,
    ) -> None:
        """Show ``volume`` through ``cursor`` (default: its centre); None clears the view."""
        self.volume = volume
        if volume is None:
            self.plan = None
            self.labelmap = self.segments = None
            self._scan.attach(None)
            self._labels.attach(None)
            if self._images_shown:
                self.renderer.RemoveViewProp(self._scan.actor)
                self.renderer.RemoveViewProp(self._labels.actor)
                self._images_shown = False
            self._crosshair.VisibilityOff()
            for actor in self._texts.values():
                actor.SetInput("")
            self._texts["message"].SetInput(self.empty_message)
            return
        self.plan = SliceGeometry.for_volume(volume.geometry, self.orientation)
        low, _ = volume.intensity_range()
        self._scan.attach(SharedImage(volume.array, volume.geometry.spacing), background=low)
        self._scan.set_sampling(self.plan)
        self._labels.set_sampling(self.plan)
        preset = initial_window(volume)
        self.window = WindowLevel(preset.center, max(preset.width, 1e-6))
        self._apply_window()
        self.set_labels(labelmap, segments)
        if not self._images_shown:
            self.renderer.AddViewProp(self._scan.actor)
            self.renderer.AddViewProp(self._labels.actor)
            self._images_shown = True
        self._texts["message"].SetInput("")
        self.letters = self.plan.letters()
        self._update_orientation_letters()
        self.set_cursor(volume_centre(volume.geometry) if cursor is None else cursor, force=True)

    def set_labels(self, labelmap: LabelMap | None, segments: SegmentTable | None) -> None:
        """Attach the overlay's label map (on the volume's grid) and its segment table."""
        if labelmap is not None and (self.volume is None or labelmap.shape != self.volume.shape):
            raise ValueError("the label map is not on the shown volume's grid")
        self.labelmap = labelmap
        self.segments = segments
        self.label_uploads.clear()
        if labelmap is None:
            self._labels.attach(None)
            self._labels.actor.VisibilityOff()
            self.label_extent = None
            return
        self._reattach_labels()

    def _reattach_labels(self) -> None:
        self._labels.attach(SharedImage(self.labelmap.array, self.volume.geometry.spacing), background=0)
        self._labels.set_sampling(self.plan)
        self._labels.set_matrix(self.plan.reslice_matrix(self.slice_position))
        self.segments_changed()
        self._use_outline_input()

    def segments_changed(self, *_args) -> None:
        """Rebuild the overlay colours (a segment was added, recoloured, hidden or removed)."""
        if self.labelmap is None or self._labels.shared is None:
            return
        size = label_table_size(self._labels.shared.array.dtype)
        colors = build_label_colors(self.segments, size, alpha=1.0)
        self._labels.property.SetLookupTable(make_lookup_table(colors))
        self._apply_label_opacity()

    def labels_changed(self, box: Box | None = None) -> bool:
        """React to ``LabelMap.changed``; True when this view's slice shows a change.

        The label image shares the model's memory, so marking it modified is all it takes:
        VTK re-slices only the one visible slice. Views whose slice misses ``box`` do nothing.
        """
        if self.labelmap is None or self._labels.shared is None or self.plan is None:
            return False
        box = box or Box.full(self.labelmap.shape)
        if self._labels.shared.source is not self.labelmap.array:
            # The array was replaced (loaded labels, or promoted to uint16): start over.
            self._reattach_labels()
            self.label_uploads.append(Box.full(self.labelmap.shape))
            return True
        if not self.plan.box_touches_slice(box, self.slice_position):
            return False
        self._labels.shared.modified()
        self._refresh_label_layer()
        self.label_uploads.append(box)
        return True

    def set_labels_visible(self, visible: bool) -> None:
        self.labels_visible = bool(visible)
        self._labels.actor.SetVisibility(self.labels_visible and self.labelmap is not None and self.label_extent is not None)

    def set_label_alpha(self, alpha: float) -> None:
        self.label_alpha = float(np.clip(alpha, 0.0, 1.0))
        self._apply_label_opacity()

    def _apply_label_opacity(self) -> None:
        gain = OUTLINE_OPACITY_GAIN if self.outline_mode else 1.0
        self._labels.property.SetOpacity(min(1.0, self.label_alpha * gain))

    def set_outline_mode(self, outline: bool) -> None:
        """Draw only the borders of each label (the anatomy inside stays unobstructed)."""
        self.outline_mode = bool(outline)
        self._use_outline_input()
        self._apply_label_opacity()

    def _use_outline_input(self) -> None:
        if self.outline_mode and self.labelmap is not None:
            self._labels.mapper.SetInputData(self._outline_image)
        else:
            self._labels.mapper.SetInputConnection(self._labels.reslice.GetOutputPort())
        self._refresh_label_layer()

    def _refresh_label_layer(self) -> None:
        """Re-slice the labels now and draw only the part of the slice that holds any.

        On software OpenGL every full-view textured layer costs as much as the scan itself;
        cropping the overlay to its labelled rectangle (hiding it on unlabelled slices)
        keeps a slice change close to the cost of showing the scan alone.
        """
        if self.labelmap is None or self.plan is None:
            return
        labels = self._labels.output_array()
        rows = np.flatnonzero(labels.any(axis=1))
        self.label_extent = None
        if rows.size:
            columns = np.flatnonzero(labels.any(axis=0))
            self.label_extent = (int(columns[0]), int(columns[-1]), int(rows[0]), int(rows[-1]))
            self._labels.mapper.SetCroppingRegion(*self.label_extent, 0, 0)
            self._labels.mapper.CroppingOn()
        self._labels.actor.SetVisibility(self.labels_visible and self.label_extent is not None)
        if self.outline_mode:
            self._refresh_outline(labels)

    def _refresh_outline(self, labels: np.ndarray) -> None:
        """Recompute the outline of the current label slice into the buffer VTK displays."""
        if self._outline_buffer is None or self._outline_buffer.shape != labels.shape or self._outline_buffer.dtype != labels.dtype:
            self._outline_buffer = np.zeros(labels.shape, dtype=labels.dtype)
            self._outline_scalars = numpy_to_vtk(self._outline_buffer.reshape(-1), deep=False)
        output = self._labels.reslice.GetOutput()
        self._outline_image.SetDimensions(output.GetDimensions())
        self._outline_image.SetOrigin(output.GetOrigin())
        self._outline_image.SetSpacing(output.GetSpacing())
        self._outline_image.GetPointData().SetScalars(self._outline_scalars)
        label_outline(labels, out=self._outline_buffer)
        self._outline_scalars.Modified()
        self._outline_image.Modified()

    # -- cursor, slice and window ------------------------------------------------------------
    def set_cursor(self, point, force: bool = False) -> bool:
        """Move the plane through ``point`` (LPS mm) and the crosshair onto it.

        Returns True when anything visible changed.
        """
        if self.plan is None:
            return False
        point = np.asarray(point, dtype=float)
        if not force and np.allclose(point, self.cursor, atol=1e-9, rtol=0):
            return False
        self.cursor = point.copy()
        position = self.plan.slice_position(point)
        if force or abs(position - self.slice_position) > 1e-9:
            self.slice_position = position
            matrix = self.plan.reslice_matrix(position)
            self._scan.set_matrix(matrix)
            if self.labelmap is not None:
                self._labels.set_matrix(matrix)
                self._refresh_label_layer()
        self._update_crosshair()
        self._update_annotations()
        return True

    def stepped_cursor(self, delta: int) -> np.ndarray:
        """The cursor moved ``delta`` slices along this view's normal (clamped)."""
        return self.plan.step_point(self.cursor, delta)

    def cursor_on_slice(self, index: int) -> np.ndarray:
        return self.plan.move_to_slice(self.cursor, index)

    def set_window_level(self, window: WindowLevel) -> None:
        self.window = WindowLevel(float(window.center), max(float(window.width), 1e-6))
        self._apply_window()
        self._update_annotations()

    def _apply_window(self) -> None:
        self._scan.property.SetColorWindow(self.window.width)
        self._scan.property.SetColorLevel(self.window.center)

    def set_interpolation(self, linear: bool) -> None:
        """Linear (smooth when zoomed) or nearest-neighbour sampling of the scan; labels stay nearest."""
        self.linear_interpolation = bool(linear)
        self._scan.set_interpolation(self.linear_interpolation)

    def set_crosshair_visible(self, visible: bool) -> None:
        self.crosshair_visible = bool(visible)
        self._crosshair.SetVisibility(self.crosshair_visible and self.plan is not None)

    def scan_slice(self) -> np.ndarray | None:
        """The resliced scan on screen, (rows, columns) with row 0 at the top (read-only use)."""
        return self._scan.output_array() if self.plan is not None else None

    def label_slice(self) -> np.ndarray | None:
        """The resliced labels on screen (filled, even in outline mode)."""
        return self._labels.output_array() if (self.plan is not None and self.labelmap is not None) else None

    # -- annotations ---------------------------------------------------------------------------
    def _update_crosshair(self) -> None:
        x, y = self.plan.plane_coordinates(self.cursor)
        x0, x1, y0, y1 = self.plan.image_bounds()
        reach = 10.0 * max(x1 - x0, y1 - y0, 1.0)
        depth = -1.0  # just in front of the image (the camera sits at -z)
        points = self._crosshair_points
        points.SetPoint(0, x, y0 - reach, depth)
        points.SetPoint(1, x, y1 + reach, depth)
        points.SetPoint(2, x0 - reach, y, depth)
        points.SetPoint(3, x1 + reach, y, depth)
        points.Modified()
        self._crosshair_data.Modified()
        self._crosshair.SetVisibility(self.crosshair_visible)

    def _update_orientation_letters(self) -> None:
        letters = self.letters
        for place in EDGES:
            self._set_text(place, getattr(letters, place))

    def _update_annotations(self) -> None:
        volume = self.volume
        if volume is None or self.plan is None:
            return
        self._set_text(
            "lower_left",
            f"{format_slice_counter(self.slice_index, self.num_slices)}\n{self.plan.position_text(self.cursor)}",
        )
        self._set_text("lower_right", format_window_level(self.window))

    def _set_text(self, place: str, text: str) -> None:
        # Re-setting an unchanged text would re-render its glyphs for nothing.
        actor = self._texts[place]
        if (actor.GetInput() or "") != text:
            actor.SetInput(text)

    def corner_texts(self) -> dict[str, str]:
        """The annotation strings currently drawn (for tests and accessibility)."""
        return {name: self._texts[name].GetInput() or "" for name in CORNERS}

    def set_empty_message(self, text: str) -> None:
        self.empty_message = text
        if self.volume is None:
            self._texts["message"].SetInput(text)

    def edge_letters(self) -> dict[str, str]:
        return {name: self._texts[name].GetInput() or "" for name in EDGES}

    # -- camera ------------------------------------------------------------------------------
    def fit_camera(self, view_width: int | None = None, view_height: int | None = None) -> None:
        """Centre the image and zoom so all of it is visible and fills the view."""
        if self.plan is None:
            return
        if view_width is None or view_height is None:
            view_width, view_height = self.renderer.GetSize()
        aspect = (view_width / view_height) if view_width and view_height else 1.0
        x0, x1, y0, y1 = self.plan.image_bounds()
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        half_height = max((y1 - y0) / 2.0, (x1 - x0) / 2.0 / aspect) * FIT_MARGIN
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        distance = 10.0 * max(x1 - x0, y1 - y0, 1.0)
        camera.SetFocalPoint(cx, cy, 0.0)
        camera.SetPosition(cx, cy, -distance)  # look along +z ...
        camera.SetViewUp(0.0, -1.0, 0.0)  # ... with y (screen down) growing downwards
        camera.SetParallelScale(half_height)
        camera.SetClippingRange(distance * 0.5, distance * 1.5)

    @property
    def zoom_factor(self) -> float:
        """Magnification relative to the camera's parallel scale (for tests and the UI)."""
        return 1.0 / max(self.renderer.GetActiveCamera().GetParallelScale(), 1e-12)

    def zoom(self, factor: float, around_display: tuple[float, float] | None = None) -> None:
        """Magnify by ``factor`` (> 1 zooms in), keeping the point under ``around_display`` still."""
        if factor <= 0 or not math.isfinite(factor):
            return
        camera = self.renderer.GetActiveCamera()
        if around_display is not None:
            anchor = np.asarray(self.display_to_world(*around_display))
            focal = np.asarray(camera.GetFocalPoint())
            shift = (anchor - focal) * (1.0 - 1.0 / factor)
            shift[2] = 0.0
            camera.SetFocalPoint(*(focal + shift))
            camera.SetPosition(*(np.asarray(camera.GetPosition()) + shift))
        camera.SetParallelScale(camera.GetParallelScale() / factor)

    def pan(self, from_display: tuple[float, float], to_display: tuple[float, float]) -> None:
        """Move the image with the mouse from one display point to another."""
        delta = np.asarray(self.display_to_world(*to_display)) - np.asarray(self.display_to_world(*from_display))
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(*(np.asarray(camera.GetFocalPoint()) - delta))
        camera.SetPosition(*(np.asarray(camera.GetPosition()) - delta))

    # -- coordinates ---------------------------------------------------------------------------
    def display_to_world(self, x: float, y: float) -> tuple[float, float, float]:
        """VTK display pixel (origin bottom-left) -> plane coordinates (x, y, 0)."""
        renderer = self.renderer
        renderer.SetDisplayPoint(float(x), float(y), 0.0)
        renderer.DisplayToWorld()
        wx, wy, _, w = renderer.GetWorldPoint()
        if w:
            wx, wy = wx / w, wy / w
        return (wx, wy, 0.0)

    def display_to_physical(self, x: float, y: float) -> np.ndarray | None:
        """LPS point (mm) on the shown plane under a display pixel."""
        if self.plan is None:
            return None
        wx, wy, _ = self.display_to_world(x, y)
        return self.plan.point_on_plane(wx, wy, self.slice_position)

    def physical_to_display(self, point) -> tuple[float, float]:
        """Display pixel (origin bottom-left) of an LPS point projected onto the plane."""
        x, y = self.plan.plane_coordinates(point)
        self.renderer.SetWorldPoint(x, y, 0.0, 1.0)
        self.renderer.WorldToDisplay()
        dx, dy, _ = self.renderer.GetDisplayPoint()
        return (dx, dy)

    def display_to_index(self, x: float, y: float) -> tuple[int, int, int] | None:
        """Voxel (i, j, k) nearest to the plane point under a display pixel, None outside."""
        point = self.display_to_physical(x, y)
        if point is None:
            return None
        return self.volume.geometry.physical_to_nearest_index(point)

    def snap(self, point) -> np.ndarray:
        """A cursor position for ``point`` that the views can show exactly (see snap_cursor)."""
        return snap_cursor(self.volume.geometry, point)

