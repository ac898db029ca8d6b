"""The VTK scene of the 3D view: segment surfaces, slice planes, volume rendering, camera.

:class:`Scene3D` owns a ``vtkRenderer`` and knows nothing of Qt (the widget in
``medviewer.ui.view3d`` hosts it, runs the surface jobs and forwards user actions). The
world is the patient's LPS frame in millimetres: +x left, +y posterior, +z superior.
Surfaces arrive ready-made (built on a worker thread) and are only attached here, on the
GUI thread.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPlane, vtkPolyData
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkImageProperty,
    vtkImageSlice,
    vtkLightKit,
    vtkPolyDataMapper,
    vtkRenderer,
)
from vtkmodules.vtkRenderingImage import vtkImageResliceMapper, vtkImageStack

import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (GPU volume mapper)

from medviewer.model.geometry import Geometry
from medviewer.model.segments import DEFAULT_COLORS, SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.label_colors import build_label_colors, label_table_size, make_lookup_table
from medviewer.render.volume_rendering import VolumeRendering, default_preset_name, image_data_from_volume, preset_names

#: Gradient background, bottom and top (dark, so organs and the scan stand out).
BACKGROUND_BOTTOM = (0.05, 0.06, 0.08)
BACKGROUND_TOP = (0.20, 0.23, 0.29)

#: Slicer's colour code of the three slice orientations.
PLANE_COLORS = {
    "axial": (0.95, 0.29, 0.20),
    "coronal": (0.43, 0.69, 0.29),
    "sagittal": (0.93, 0.84, 0.30),
}
#: LPS normal of each patient-axis plane.
PLANE_NORMALS = {
    "axial": (0.0, 0.0, 1.0),
    "coronal": (0.0, 1.0, 0.0),
    "sagittal": (1.0, 0.0, 0.0),
}

#: Opacity of the label overlay on the slice planes (as in the 2D views).
PLANE_LABEL_ALPHA = 0.5

#: Camera distance factor beyond the fitted one, so the volume does not touch the edges.
CAMERA_FIT_MARGIN = 1.1


def segment_color(segments: SegmentTable | None, label: int) -> tuple[float, float, float]:
    """Colour of a label's surface in 0..1: its segment's colour, or the default for the label."""
    segment = segments.get(label) if segments is not None else None
    rgb = segment.color if segment is not None else DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]
    return tuple(float(c) / 255.0 for c in rgb)  # type: ignore[return-value]


def segment_visible(segments: SegmentTable | None, label: int) -> bool:
    segment = segments.get(label) if segments is not None else None
    return True if segment is None else bool(segment.visible)


def grid_corners(geometry: Geometry) -> np.ndarray:
    """(8, 3) LPS corners of the box spanned by the voxel centres."""
    ni, nj, nk = (s - 1 for s in geometry.size_xyz)
    corners = np.array([[i, j, k] for k in (0, nk) for j in (0, nj) for i in (0, ni)], dtype=float)
    return geometry.index_to_physical(corners)


def grid_bounds(geometry: Geometry) -> tuple[float, float, float, float, float, float]:
    """Axis-aligned LPS bounds (xmin, xmax, ymin, ymax, zmin, zmax) of the voxel centres."""
    corners = grid_corners(geometry)
    low, high = corners.min(axis=0), corners.max(axis=0)
    return (low[0], high[0], low[1], high[1], low[2], high[2])


def plane_outline(geometry: Geometry, point, normal) -> np.ndarray:
    """Polygon (N, 3) where a plane cuts the grid's box, in order around it; empty if it misses.

    Intersects the 12 box edges in index space (where the box is axis-aligned even for an
    oblique scan), then sorts the hits by angle around their centre.
    """
    point = np.asarray(point, dtype=float)
    normal = np.asarray(normal, dtype=float)
    corners = grid_corners(geometry)
    distances = (corners - point) @ normal
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    hits = []
    for a, b in edges:
        da, db = distances[a], distances[b]
        if (da < 0) != (db < 0) or da == 0 or db == 0:
            if da == db:
                continue
            t = da / (da - db)
            if 0.0 <= t <= 1.0:
                hits.append(corners[a] + t * (corners[b] - corners[a]))
    if len(hits) < 3:
        return np.zeros((0, 3))
    hits = np.asarray(hits)
    _, first = np.unique(np.round(hits, 6), axis=0, return_index=True)  # a plane through a corner hits it thrice
    hits = hits[np.sort(first)]
    if len(hits) < 3:
        return np.zeros((0, 3))
    centre = hits.mean(axis=0)
    u = hits[0] - centre
    u /= np.linalg.norm(u) or 1.0
    v = np.cross(normal, u)
    angles = np.arctan2((hits - centre) @ v, (hits - centre) @ u)
    return hits[np.argsort(angles)]


class _SlicePlane:
    """One patient-axis plane in 3D: the resliced scan with the label overlay, and an outline.

    Scan and labels are two layers of a vtkImageStack, so the overlay is drawn on the
    scan without the two coplanar images fighting for depth.
    """

    def __init__(self, name: str):
        self.name = name
        self.normal = PLANE_NORMALS[name]
        self.plane = vtkPlane()
        self.plane.SetNormal(self.normal)
        self.mapper, self.property, self.image_actor = self._make_layer("linear", layer=0)
        self.label_mapper, self.label_property, self.label_actor = self._make_layer("nearest", layer=1)
        self.label_property.SetUseLookupTableScalarRange(True)
        self.label_actor.VisibilityOff()
        self.stack = vtkImageStack()
        self.stack.AddImage(self.image_actor)
        self.stack.AddImage(self.label_actor)
        self.stack.SetActiveLayer(0)
        self.stack.PickableOff()

        self.outline = vtkPolyData()
        outline_mapper = vtkPolyDataMapper()
        outline_mapper.SetInputData(self.outline)
        self.outline_actor = vtkActor()
        self.outline_actor.SetMapper(outline_mapper)
        prop = self.outline_actor.GetProperty()
        prop.SetColor(PLANE_COLORS[name])
        prop.SetLineWidth(2.5)
        prop.LightingOff()
        self.outline_actor.PickableOff()

    def _make_layer(self, interpolation: str, layer: int):
        mapper = vtkImageResliceMapper()
        mapper.SetSlicePlane(self.plane)
        mapper.SliceFacesCameraOff()
        mapper.SliceAtFocalPointOff()
        mapper.JumpToNearestSliceOff()
        mapper.ResampleToScreenPixelsOff()  # a plain texture: cheap to re-render on rotation
        prop = vtkImageProperty()
        if interpolation == "nearest":
            prop.SetInterpolationTypeToNearest()
        else:
            prop.SetInterpolationTypeToLinear()
        prop.SetAmbient(1.0)
        prop.SetDiffuse(0.0)
        prop.SetLayerNumber(layer)
        actor = vtkImageSlice()
        actor.SetMapper(mapper)
        actor.SetProperty(prop)
        actor.PickableOff()
        return mapper, prop, actor

    def set_labels(self, image: vtkImageData | None, lookup_table) -> None:
        if image is None:
            self.label_actor.VisibilityOff()
            return
        self.label_mapper.SetInputData(image)
        self.label_property.SetLookupTable(lookup_table)
        self.label_actor.VisibilityOn()

    def set_image(self, image: vtkImageData | None) -> None:
        if image is not None:
            self.mapper.SetInputData(image)

    def move(self, geometry: Geometry | None, point) -> None:
        self.plane.SetOrigin(*point)
        polygon = plane_outline(geometry, point, self.normal) if geometry is not None else np.zeros((0, 3))
        points = vtkPoints()
        lines = vtkCellArray()
        if len(polygon):
            for p in polygon:
                points.InsertNextPoint(*p)
            lines.InsertNextCell(len(polygon) + 1)
            for index in list(range(len(polygon))) + [0]:
                lines.InsertCellPoint(index)
        self.outline.SetPoints(points)
        self.outline.SetLines(lines)
        self.outline.Modified()

    def set_window_level(self, center: float, width: float) -> None:
        self.property.SetColorLevel(center)
        self.property.SetColorWindow(max(width, 1e-6))

    def set_visible(self, textured: bool, outlined: bool) -> None:
        self.stack.SetVisibility(textured)
        self.outline_actor.SetVisibility(outlined)


class Scene3D:
    """Segment surfaces, slice planes and volume rendering of one case in LPS space."""

    def __init__(self, renderer: vtkRenderer | None = None):
        self.renderer = renderer if renderer is not None else vtkRenderer()
        self.renderer.GradientBackgroundOn()
        self.renderer.SetBackground(*BACKGROUND_BOTTOM)
        self.renderer.SetBackground2(*BACKGROUND_TOP)
        # No FXAA: with a QWidget-hosted window under Mesa it turns the whole frame black.
        self.renderer.SetTwoSidedLighting(True)
        self._light_kit = vtkLightKit()
        self._light_kit.SetKeyLightIntensity(0.85)
        self._light_kit.AddLightsToRenderer(self.renderer)

        self.volume: Volume | None = None
        self.segments: SegmentTable | None = None
        self.cursor: tuple[float, float, float] | None = None
        self.planes_visible = True
        #: Scan (and label overlay) drawn on the planes; otherwise only their coloured
        #: outlines, which locate the slices without hiding the organs behind them.
        self.planes_textured = False
        self.window: tuple[float, float] | None = None
        self.volume_rendering_enabled = False
        self.volume_rendering_preset: str | None = None
        #: False selects CPU ray casting (set by the host when OpenGL is software-emulated).
        self.gpu_volume_rendering = True
        self._image: vtkImageData | None = None
        self._voxels: np.ndarray | None = None  # the buffer self._image reads (kept alive)
        self._volume_rendering: VolumeRendering | None = None
        self._label_image: vtkImageData | None = None
        self._label_voxels: np.ndarray | None = None  # the buffer self._label_image reads
        self._surface_actors: dict[int, vtkActor] = {}
        self._planes = {name: _SlicePlane(name) for name in PLANE_NORMALS}
        for plane in self._planes.values():
            plane.set_visible(False, False)
            self.renderer.AddViewProp(plane.stack)
            self.renderer.AddViewProp(plane.outline_actor)

    # -- scan -----------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None) -> None:
        """Show ``volume``'s slice planes (cursor at its centre) and use it for volume rendering."""
        if self._volume_rendering is not None:
            self.renderer.RemoveVolume(self._volume_rendering.actor)
            self._volume_rendering = None
        self.volume = volume
        if volume is None:
            self._image = self._voxels = None
            self.cursor = None
            self._update_planes()
            return
        self._image, self._voxels = image_data_from_volume(volume)
        for plane in self._planes.values():
            plane.set_image(self._image)
        preset = volume.auto_window()
        self.set_window_level(preset.center, preset.width)
        self.cursor = tuple(float(c) for c in grid_corners(volume.geometry).mean(axis=0))  # type: ignore[assignment]
        self._update_planes()
        if self.volume_rendering_preset is not None and self.volume_rendering_preset not in preset_names():
            self.volume_rendering_preset = None
        self.set_volume_rendering(self.volume_rendering_enabled, self.volume_rendering_preset)

    def set_cursor(self, point_lps) -> None:
        self.cursor = tuple(float(c) for c in point_lps)  # type: ignore[assignment]
        self._update_planes()

    def set_window_level(self, center: float, width: float) -> None:
        self.window = (float(center), float(width))
        for plane in self._planes.values():
            plane.set_window_level(*self.window)

    def set_planes_visible(self, visible: bool) -> None:
        self.planes_visible = bool(visible)
        self._update_planes()

    def set_planes_textured(self, textured: bool) -> None:
        self.planes_textured = bool(textured)
        self._update_planes()

    def _update_planes(self) -> None:
        geometry = self.volume.geometry if self.volume is not None else None
        shown = self.planes_visible and geometry is not None and self.cursor is not None
        for plane in self._planes.values():
            if shown:
                plane.move(geometry, self.cursor)
            plane.set_visible(shown and self.planes_textured, shown)

    def plane_outline_points(self, name: str) -> np.ndarray:
        """The drawn outline of plane ``name`` (tests, diagnostics)."""
        points = self._planes[name].outline.GetPoints()
        return vtk_to_numpy(points.GetData()).copy() if points is not None and points.GetNumberOfPoints() else np.zeros((0, 3))

    # -- volume rendering ---------------------------------------------------------------
    @property
    def volume_rendering_shown(self) -> bool:
        return self.volume_rendering_enabled and self._volume_rendering is not None

    def set_volume_rendering(self, enabled: bool, preset: str | None = None) -> None:
        if preset is not None and preset not in preset_names():
            raise ValueError(f"unknown volume rendering preset {preset!r}; choose from {preset_names()}")
        self.volume_rendering_enabled = bool(enabled)
        if preset is not None:
            self.volume_rendering_preset = preset
        if self.volume is None:
            return
        name = self.volume_rendering_preset or default_preset_name(self.volume)
        if enabled and self._volume_rendering is None:
            self._volume_rendering = VolumeRendering(self.volume, name, voxels=self._voxels, use_gpu=self.gpu_volume_rendering)
            self.renderer.AddVolume(self._volume_rendering.actor)
        elif self._volume_rendering is not None and self._volume_rendering.preset_name != name:
            self._volume_rendering.set_preset(name)
        if self._volume_rendering is not None:
            self._volume_rendering.actor.SetVisibility(self.volume_rendering_enabled)
        self.volume_rendering_preset = name

    # -- surfaces -----------------------------------------------------------------------
    @property
    def surface_labels(self) -> list[int]:
        return sorted(self._surface_actors)

    def surface_actor(self, label: int) -> vtkActor | None:
        return self._surface_actors.get(label)

    def set_segments(self, segments: SegmentTable | None) -> None:
        self.segments = segments
        self.update_segment_display()

    # -- label overlay on the slice planes ------------------------------------------------
    def set_plane_labels(self, labels: np.ndarray | None, geometry: Geometry | None) -> None:
        """Show ``labels`` (the label map's own array, read in place) on the slice planes."""
        if labels is None or geometry is None:
            self._label_image = self._label_voxels = None
            for plane in self._planes.values():
                plane.set_labels(None, None)
            return
        self._label_voxels = np.ascontiguousarray(labels)
        image = vtkImageData()
        nx, ny, nz = geometry.size_xyz
        image.SetDimensions(nx, ny, nz)
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirectionMatrix(geometry.direction)
        scalars = numpy_to_vtk(self._label_voxels.reshape(-1), deep=False)
        scalars.SetName("labels")
        image.GetPointData().SetScalars(scalars)
        self._label_image = image
        self._apply_plane_label_colors()

    def plane_labels_source(self) -> np.ndarray | None:
        """The array the plane overlay reads (to notice when the label map replaced it)."""
        return self._label_voxels

    def plane_labels_modified(self) -> None:
        """The label array changed in place: re-slice it at the next render."""
        if self._label_image is not None:
            self._label_image.GetPointData().GetScalars().Modified()
            self._label_image.Modified()

    def _apply_plane_label_colors(self) -> None:
        if self._label_image is None:
            return
        size = label_table_size(self._label_voxels.dtype)
        table = make_lookup_table(build_label_colors(self.segments, size, PLANE_LABEL_ALPHA))
        for plane in self._planes.values():
            plane.set_labels(self._label_image, table)

    def set_surface(self, label: int, surface: vtkPolyData | None) -> None:
        """Show ``surface`` for ``label`` (None removes it)."""
        actor = self._surface_actors.get(label)
        if surface is None:
            if actor is not None:
                self.renderer.RemoveActor(actor)
                del self._surface_actors[label]
            return
        if actor is None:
            actor = self._make_surface_actor()
            self._surface_actors[label] = actor
            self.renderer.AddActor(actor)
        actor.GetMapper().SetInputData(surface)
        self._style_surface(label, actor)

    def clear_surfaces(self) -> None:
        for label in list(self._surface_actors):
            self.set_surface(label, None)

    def update_segment_display(self, label: int | None = None) -> None:
        """Follow the segment table: colours and visibility of one label or all."""
        self._apply_plane_label_colors()
        labels = [label] if label is not None else list(self._surface_actors)
        for value in labels:
            actor = self._surface_actors.get(value)
            if actor is not None:
                self._style_surface(value, actor)

    @staticmethod
    def _make_surface_actor() -> vtkActor:
        mapper = vtkPolyDataMapper()
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetInterpolationToPhong()
        prop.SetAmbient(0.06)
        prop.SetDiffuse(0.88)
        prop.SetSpecular(0.22)
        prop.SetSpecularPower(28.0)
        prop.SetSpecularColor(1.0, 1.0, 1.0)
        return actor

    def _style_surface(self, label: int, actor: vtkActor) -> None:
        actor.GetProperty().SetColor(*segment_color(self.segments, label))
        actor.SetVisibility(segment_visible(self.segments, label))

    # -- camera -------------------------------------------------------------------------
    def content_bounds(self, geometry: Geometry | None = None) -> tuple[float, ...] | None:
        """What "whole volume in view" means: the scan's box, else the label grid's, else the props'."""
        geometry = self.volume.geometry if self.volume is not None else geometry
        if geometry is not None:
            return grid_bounds(geometry)
        bounds = self.renderer.ComputeVisiblePropBounds()
        return tuple(bounds) if bounds[0] <= bounds[1] else None

    def reset_camera(self, geometry: Geometry | None = None) -> None:
        """Anterior view (patient's right on screen left), superior up, everything in view."""
        bounds = self.content_bounds(geometry)
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOff()
        camera.SetViewAngle(30.0)
        if bounds is None:
            camera.SetFocalPoint(0.0, 0.0, 0.0)
            camera.SetPosition(0.0, -1.0, 0.0)
            camera.SetViewUp(0.0, 0.0, 1.0)
            return
        centre = np.array([(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2])
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre - np.array([0.0, 1.0, 0.0])))  # from anterior (-y)
        camera.SetViewUp(0.0, 0.0, 1.0)
        # Fit the box's projection (width x, height z) rather than its bounding sphere,
        # which would leave a thin scan small in the view.
        width_x, depth_y, height_z = bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]
        width, height = self.renderer.GetSize()
        aspect = width / height if width > 0 and height > 0 else 1.0
        half_angle = np.radians(camera.GetViewAngle() / 2.0)
        half_extent = max(height_z / 2.0, width_x / 2.0 / aspect)
        distance = CAMERA_FIT_MARGIN * half_extent / np.tan(half_angle) + depth_y / 2.0
        camera.SetPosition(*(centre - np.array([0.0, distance, 0.0])))
        self.renderer.ResetCameraClippingRange()

    def reset_clipping_range(self) -> None:
        self.renderer.ResetCameraClippingRange()

    def release(self) -> None:
        """Drop the scene's props and buffers (the widget is going away)."""
        self.clear_surfaces()
        self.set_plane_labels(None, None)
        self.set_volume(None)
        self.renderer.RemoveAllViewProps()
