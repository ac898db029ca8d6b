"""Which numpy dtypes VTK can read in place (shared by the 2D and 3D pipelines)."""

from __future__ import annotations

import numpy as np

#: dtypes VTK reads directly from numpy memory; anything else is converted once.
VTK_DTYPES = frozenset(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                            np.int64, np.uint64, np.float32, np.float64))


def vtk_friendly_dtype(dtype) -> np.dtype:
    """The dtype VTK needs for voxels of ``dtype``: the same one when VTK supports it."""
    dtype = np.dtype(dtype)
    if dtype.byteorder not in ("=", "|"):
        dtype = dtype.newbyteorder("=")  # the conversion swaps the bytes once
    if dtype in VTK_DTYPES:
        return dtype
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    raise ValueError(f"cannot display voxels of type {dtype}")
