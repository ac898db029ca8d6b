"""Hand numpy volumes to VTK without copying them (no Qt).

A C-contiguous (z, y, x) array flattened is x-fastest, exactly VTK's point order, so
``numpy_to_vtk(deep=False)`` lets VTK read the voxels in place. The wrapper keeps a
reference to the array: VTK does not own the memory and must never outlive it.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkImageData

from medviewer.render.slicing import vtk_friendly_dtype


def vtk_ready_array(array: np.ndarray) -> np.ndarray:
    """``array`` itself when VTK can share it, else the one unavoidable converted copy.

    Shared: native-endian, C-contiguous arrays of VTK's scalar types, and bool (viewed as
    uint8, still no copy). Copied: float16 (to float32), byte-swapped or strided arrays.
    """
    if array.dtype == np.bool_ and array.flags.c_contiguous:
        return array.view(np.uint8)
    return np.ascontiguousarray(array, dtype=vtk_friendly_dtype(array.dtype))


class SharedImage:
    """A vtkImageData whose scalars are the memory of a (z, y, x) numpy array.

    Origin is 0 and there is no direction: the data lives in scaled index coordinates
    ``spacing * (i, j, k)`` and the views fold origin and direction into their reslice
    matrices (see :meth:`medviewer.render.mpr.SliceGeometry.reslice_matrix`).
    """

    def __init__(self, array: np.ndarray, spacing: tuple[float, float, float]):
        if array.ndim != 3:
            raise ValueError(f"need a 3D array, got shape {array.shape}")
        self.source = array  # the model's array (identity tells when it was replaced)
        self.array = vtk_ready_array(array)
        nz, ny, nx = self.array.shape
        self.image = vtkImageData()
        self.image.SetDimensions(nx, ny, nz)
        self.image.SetSpacing(*(float(s) for s in spacing))
        self.image.SetOrigin(0.0, 0.0, 0.0)
        self._scalars = numpy_to_vtk(self.array.reshape(-1), deep=False)
        self._scalars.SetName("voxels")
        self.image.GetPointData().SetScalars(self._scalars)

    @property
    def is_zero_copy(self) -> bool:
        return np.shares_memory(vtk_to_numpy(self.image.GetPointData().GetScalars()), self.source)

    def modified(self) -> None:
        """Tell VTK the voxels changed in place (its pipeline then re-executes on demand)."""
        self._scalars.Modified()
        self.image.Modified()


def image_scalars(image: vtkImageData) -> np.ndarray:
    """A 2D VTK image's scalars as a (rows, columns) numpy view (row = y, column = x)."""
    nx, ny, _ = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        return np.zeros((0, 0))
    return vtk_to_numpy(scalars).reshape(ny, nx)
