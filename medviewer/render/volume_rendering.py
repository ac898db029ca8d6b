"""Volume rendering of the scan: transfer-function presets and the vtkVolume that uses them.

No Qt here. The scan's numpy array is shared with VTK (no copy of a 300-slice series):
:func:`image_data_from_volume` wraps it in a ``vtkImageData`` carrying the grid's spacing,
origin and direction, so the rendering sits in the same LPS world as the surfaces and the
slice planes. The same image data also feeds the textured slice planes of the 3D view.

Presets are control points in the scan's own units. CT presets are in Hounsfield units;
MR intensities have no absolute scale, so the MR preset is given as fractions of the
volume's 1-99 percentile range and placed on each volume when applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPiecewiseFunction
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkRenderingCore import vtkColorTransferFunction, vtkVolume, vtkVolumeProperty

from medviewer.model.geometry import Geometry
from medviewer.model.volume import Volume
from medviewer.render.slicing import vtk_friendly_dtype


@dataclass(frozen=True)
class VolumeRenderingPreset:
    """Colour and opacity control points of a transfer function.

    ``color_points`` are (value, r, g, b) with colours in 0..1; ``opacity_points`` are
    (value, opacity). With ``relative`` the values are fractions of the volume's robust
    intensity range (1st to 99th percentile) instead of absolute intensities.
    """

    name: str
    color_points: tuple[tuple[float, float, float, float], ...]
    opacity_points: tuple[tuple[float, float], ...]
    relative: bool = False
    ambient: float = 0.2
    diffuse: float = 0.9
    specular: float = 0.3
    specular_power: float = 15.0

    def placed_on(self, volume: Volume | None) -> tuple[list[tuple[float, ...]], list[tuple[float, float]]]:
        """Control points in the volume's intensity units."""
        if not self.relative:
            return [tuple(p) for p in self.color_points], [tuple(p) for p in self.opacity_points]  # type: ignore[misc]
        low, high = volume.percentiles(1.0, 99.0) if volume is not None else (0.0, 1.0)
        if high <= low:
            high = low + 1.0

        def place(value: float) -> float:
            return low + value * (high - low)

        colors = [(place(v), r, g, b) for v, r, g, b in self.color_points]
        opacities = [(place(v), a) for v, a in self.opacity_points]
        return colors, opacities


#: Built-in presets, by the name shown to users.
VOLUME_RENDERING_PRESETS: dict[str, VolumeRenderingPreset] = {
    preset.name: preset
    for preset in (
        VolumeRenderingPreset(
            "CT soft tissue",
            color_points=(
                (-1000.0, 0.0, 0.0, 0.0),
                (-200.0, 0.55, 0.25, 0.15),
                (-20.0, 0.75, 0.38, 0.30),
                (40.0, 0.88, 0.50, 0.40),
                (120.0, 0.95, 0.72, 0.62),
                (300.0, 1.00, 0.92, 0.82),
                (1500.0, 1.00, 1.00, 0.95),
            ),
            opacity_points=(
                (-1000.0, 0.0),
                (-150.0, 0.0),
                (-60.0, 0.004),
                (20.0, 0.008),
                (60.0, 0.02),
                (150.0, 0.2),
                (400.0, 0.5),
                (1500.0, 0.8),
            ),
            specular=0.2,
        ),
        VolumeRenderingPreset(
            "CT bone",
            color_points=(
                (-1000.0, 0.0, 0.0, 0.0),
                (150.0, 0.55, 0.35, 0.22),
                (300.0, 0.90, 0.80, 0.62),
                (700.0, 1.00, 0.96, 0.86),
                (2000.0, 1.00, 1.00, 1.00),
            ),
            opacity_points=(
                (-1000.0, 0.0),
                (140.0, 0.0),
                (250.0, 0.25),
                (500.0, 0.75),
                (2000.0, 0.95),
            ),
            specular=0.45,
            specular_power=25.0,
        ),
        VolumeRenderingPreset(
            "MR default",
            color_points=(
                (0.0, 0.0, 0.0, 0.0),
                (0.25, 0.45, 0.32, 0.28),
                (0.55, 0.85, 0.70, 0.60),
                (1.0, 1.00, 0.97, 0.92),
            ),
            opacity_points=(
                (0.0, 0.0),
                (0.15, 0.0),
                (0.45, 0.12),
                (0.8, 0.45),
                (1.0, 0.7),
            ),
            relative=True,
            specular=0.15,
        ),
    )
}

#: OpenGL renderer names of Mesa's CPU rasterisers.
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")

#: What the view shows first for a modality when no preset is named.
DEFAULT_PRESET_FOR_MODALITY = {"CT": "CT soft tissue", "MR": "MR default"}


def preset_names() -> list[str]:
    return list(VOLUME_RENDERING_PRESETS)


def default_preset_name(volume: Volume | None) -> str:
    modality = (volume.info.modality if volume is not None else "").upper()
    if modality in DEFAULT_PRESET_FOR_MODALITY:
        return DEFAULT_PRESET_FOR_MODALITY[modality]
    if volume is not None and volume.info.units.upper() == "HU":
        return "CT soft tissue"
    return "MR default"


def contiguous_voxels(volume: Volume) -> np.ndarray:
    """The volume's voxels as a C-contiguous array VTK can read in place (usually no copy)."""
    return np.ascontiguousarray(volume.array, dtype=vtk_friendly_dtype(volume.array.dtype))


def image_data_from_volume(volume: Volume, voxels: np.ndarray | None = None, oriented: bool = True) -> tuple[vtkImageData, np.ndarray]:
    """A vtkImageData reading the volume's voxels in place.

    Returns the image and the numpy array VTK points into; the caller must keep that
    array alive as long as the image is used (VTK does not own it). With ``oriented`` the
    image carries the grid's origin and direction (LPS world directly); without, it sits
    at the origin with identity direction and only the spacing, for consumers that ignore
    the direction matrix and get it through the prop's user matrix instead
    (:func:`grid_to_world_matrix`).
    """
    geometry = volume.geometry
    if voxels is None:
        voxels = contiguous_voxels(volume)
    image = vtkImageData()
    nx, ny, nz = geometry.size_xyz
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(geometry.spacing)
    if oriented:
        image.SetOrigin(geometry.origin)
        image.SetDirectionMatrix(geometry.direction)
    scalars = numpy_to_vtk(voxels.reshape(-1), deep=False)
    scalars.SetName("scan")
    image.GetPointData().SetScalars(scalars)
    return image, voxels


def grid_to_world_matrix(geometry: Geometry) -> vtkMatrix4x4:
    """Rotation + translation taking an un-oriented image (spacing only) to LPS world."""
    matrix = vtkMatrix4x4()
    rotation = geometry.direction_matrix
    for row in range(3):
        for col in range(3):
            matrix.SetElement(row, col, float(rotation[row, col]))
        matrix.SetElement(row, 3, float(geometry.origin[row]))
    return matrix


def is_software_renderer(render_window) -> bool:
    """True on Mesa's CPU rasterisers, where GPU ray casting takes seconds per frame."""
    try:
        report = render_window.ReportCapabilities() or ""
    except Exception:  # noqa: BLE001 - no context yet: assume real hardware
        return False
    for line in report.splitlines():
        if "renderer string" in line.lower():
            name = line.lower()
            return any(word in name for word in SOFTWARE_RENDERERS)
    return False


def apply_preset(volume_property: vtkVolumeProperty, preset: VolumeRenderingPreset, volume: Volume | None) -> None:
    """Load a preset's transfer functions and shading into a vtkVolumeProperty."""
    colors, opacities = preset.placed_on(volume)
    color_function = vtkColorTransferFunction()
    for value, r, g, b in colors:
        color_function.AddRGBPoint(value, r, g, b)
    opacity_function = vtkPiecewiseFunction()
    for value, opacity in opacities:
        opacity_function.AddPoint(value, opacity)
    volume_property.SetColor(color_function)
    volume_property.SetScalarOpacity(opacity_function)
    volume_property.SetInterpolationTypeToLinear()
    volume_property.ShadeOn()
    volume_property.SetAmbient(preset.ambient)
    volume_property.SetDiffuse(preset.diffuse)
    volume_property.SetSpecular(preset.specular)
    volume_property.SetSpecularPower(preset.specular_power)
    # Opacities are per millimetre of tissue, not per sample or voxel, so a preset looks
    # the same on thin and thick slices and at any rendering quality.
    volume_property.SetScalarOpacityUnitDistance(1.0)


def make_volume_mapper(image: vtkImageData, use_gpu: bool = True):
    """vtkSmartVolumeMapper: GPU ray casting, or multithreaded CPU ray casting when asked
    (software OpenGL, where the CPU mapper is several times faster than emulated GPU)."""
    from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

    mapper = vtkSmartVolumeMapper()
    mapper.SetInputData(image)
    if use_gpu:
        mapper.SetRequestedRenderModeToDefault()  # GPU when the context supports it
    else:
        mapper.SetRequestedRenderModeToRayCast()
    mapper.SetBlendModeToComposite()
    mapper.SetInteractiveAdjustSampleDistances(True)
    mapper.SetAutoAdjustSampleDistances(True)
    return mapper


class VolumeRendering:
    """The vtkVolume of one scan plus the buffer it reads (kept alive here).

    The CPU ray caster ignores vtkImageData's direction matrix, so the image is given
    spacing only and the volume prop carries rotation and origin as its user matrix;
    every mapper honours that, and oblique scans render where their voxels are.
    ``voxels`` lets a caller share a buffer it already wraps (no second copy).
    """

    def __init__(self, volume: Volume, preset: str | None = None, voxels: np.ndarray | None = None, use_gpu: bool = True):
        self.volume = volume
        self.image, self._voxels = image_data_from_volume(volume, voxels, oriented=False)
        self.use_gpu = use_gpu
        self.mapper = make_volume_mapper(self.image, use_gpu)
        self.property = vtkVolumeProperty()
        self.actor = vtkVolume()
        self.actor.SetUserMatrix(grid_to_world_matrix(volume.geometry))
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        self.actor.PickableOff()
        self.preset_name = ""
        self.set_preset(preset or default_preset_name(volume))

    def set_preset(self, name: str) -> None:
        if name not in VOLUME_RENDERING_PRESETS:
            raise ValueError(f"unknown volume rendering preset {name!r}; choose from {preset_names()}")
        apply_preset(self.property, VOLUME_RENDERING_PRESETS[name], self.volume)
        self.preset_name = name
