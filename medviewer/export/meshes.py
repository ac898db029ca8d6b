"""Surface meshes per segment as STL or OBJ, in LPS (default) or RAS millimetres.

Surfaces come from :func:`medviewer.render.surfaces.extract_surfaces` (LPS points, outward
normals). The coordinate system is written into each file the way 3D Slicer does
(``SPACE=LPS`` / ``SPACE=RAS`` in the STL header, a comment in OBJ), and converting to RAS
negates x and y, which keeps triangle winding and normals outward.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkIOGeometry import vtkSTLWriter

from medviewer.io.errors import WriteError
from medviewer.io.safety import atomic_output, check_output, write_text_atomic
from medviewer.jobs import JobControl, ensure_control
from medviewer.model.segments import Segment

COORDINATE_SYSTEMS = ("LPS", "RAS")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "segment"


def _arrays(surface: vtkPolyData, coordinates: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    points = vtk_to_numpy(surface.GetPoints().GetData()).astype(np.float64)
    normals_vtk = surface.GetPointData().GetNormals()
    normals = vtk_to_numpy(normals_vtk).astype(np.float64) if normals_vtk is not None else None
    triangles = vtk_to_numpy(surface.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    if coordinates == "RAS":
        flip = np.array([-1.0, -1.0, 1.0])
        points = points * flip
        if normals is not None:
            normals = normals * flip
    return points, normals, triangles


def _to_ras(surface: vtkPolyData) -> vtkPolyData:
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonCore import vtkPoints

    out = vtkPolyData()
    out.DeepCopy(surface)
    points = vtk_to_numpy(surface.GetPoints().GetData()).astype(np.float64) * np.array([-1.0, -1.0, 1.0])
    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(points, deep=True))
    out.SetPoints(vtk_points)
    return out


def _write_stl(path: Path, surface: vtkPolyData, coordinates: str, name: str) -> None:
    if coordinates == "RAS":
        surface = _to_ras(surface)
    with atomic_output(path, ".stl") as temp:
        writer = vtkSTLWriter()
        writer.SetFileName(str(temp))
        writer.SetInputData(surface)
        writer.SetFileTypeToBinary()
        writer.SetHeader(f"SPACE={coordinates} medviewer segment {name}"[:79])
        if not writer.Write():
            raise WriteError("VTK could not write the STL file", path)


def _obj_text(items: list[tuple[Segment, vtkPolyData]], coordinates: str, material_file: str) -> str:
    lines = [f"# medviewer surface export; SPACE={coordinates} (millimetres)", f"mtllib {material_file}"]
    offset = 0
    for segment, surface in items:
        points, normals, triangles = _arrays(surface, coordinates)
        name = _safe_name(segment.name)
        lines.append(f"o {name}")
        lines.append(f"usemtl {name}")
        lines.extend("v " + " ".join(f"{v:.6f}" for v in p) for p in points)
        if normals is not None:
            lines.extend("vn " + " ".join(f"{v:.6f}" for v in n) for n in normals)
            faces = triangles + offset + 1
            lines.extend(f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in faces)
        else:
            faces = triangles + offset + 1
            lines.extend(f"f {a} {b} {c}" for a, b, c in faces)
        offset += len(points)
    return "\n".join(lines) + "\n"


def _mtl_text(items: list[tuple[Segment, vtkPolyData]]) -> str:
    lines = ["# medviewer segment colours"]
    for segment, _ in items:
        r, g, b = (c / 255.0 for c in segment.color)
        lines += [f"newmtl {_safe_name(segment.name)}", f"Kd {r:.6f} {g:.6f} {b:.6f}", "Ka 0 0 0", "d 1", ""]
    return "\n".join(lines)


def export_meshes(
    path: str | Path,
    labels: np.ndarray,
    geometry,
    segments: Iterable[Segment],
    fmt: str | None = None,
    coordinates: str = "LPS",
    smoothing: bool = True,
    overwrite: bool = False,
    protected: Iterable = (),
    control: JobControl | None = None,
) -> list[Path]:
    """Write each non-empty segment's surface; returns the files written.

    OBJ: one file with one named object per segment plus a ``.mtl`` with their colours.
    STL: one segment -> exactly ``path``; several -> ``<stem>_<label>_<name>.stl`` beside it.
    """
    from medviewer.render.surfaces import extract_surfaces

    control = ensure_control(control)
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    coordinates = coordinates.upper()
    if fmt not in ("stl", "obj"):
        raise WriteError(f"meshes are written as .stl or .obj, not {fmt!r}", path)
    if coordinates not in COORDINATE_SYSTEMS:
        raise WriteError(f"coordinates must be LPS or RAS, not {coordinates!r}", path)
    segments = [s for s in segments]
    surfaces = extract_surfaces(labels, geometry, [s.label for s in segments], smoothing=smoothing, control=control)
    items = [(s, surfaces[s.label]) for s in segments if s.label in surfaces]
    if not items:
        raise WriteError("there is nothing to export: every segment is empty", path)
    if fmt == "obj":
        material = path.with_suffix(".mtl")
        check_output(path, overwrite, protected)
        check_output(material, overwrite, protected)
        write_text_atomic(material, _mtl_text(items))
        write_text_atomic(path, _obj_text(items, coordinates, material.name))
        return [path, material]
    if len(items) == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}_{s.label}_{_safe_name(s.name)}.stl") for s, _ in items]
    for target in targets:
        check_output(target, overwrite, protected)
    for target, (segment, surface) in zip(targets, items):
        control.check()
        _write_stl(target, surface, coordinates, segment.name)
    return targets
