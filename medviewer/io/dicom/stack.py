"""Order frames in space and decide the voxel grid, refusing stacks a grid cannot represent.

This is pure header arithmetic (no pixels), so the scan can run it to warn early and the
loader runs it again to know where every frame goes before decoding anything.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from medviewer.io.dicom.series import DicomFrame
from medviewer.io.errors import InconsistentSeriesError, NoImageDataError

#: Two slices closer than this along the normal are at the same position (mm).
DUPLICATE_TOLERANCE = 0.01
#: Relative and absolute tolerance when comparing slice distances (1 % or 0.01 mm).
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE = 0.01
#: Sideways drift of slice positions allowed before we call it a tilt, in pixels.
TILT_PIXEL_TOLERANCE = 0.1
#: Cosines may deviate this much from unit length / orthogonality (header round-off).
ORIENTATION_TOLERANCE = 1e-2


@dataclass
class Gap:
    """Missing slices between two present ones."""

    after_position: float  # along the normal, mm
    distance: float  # mm between the two present slices
    missing: int


@dataclass
class StackPlan:
    """Where each frame goes: ``slots[k]`` indexes the input frames, None for a filled gap."""

    slots: list[int | None]
    spacing: tuple[float, float, float]  # ITK order (column, row, slice)
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, columns are the axes
    positional: bool  # True when slices were placed by ImagePositionPatient
    warnings: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    expected_spacing: float = 0.0

    @property
    def filled_slots(self) -> list[int]:
        return [k for k, index in enumerate(self.slots) if index is None]


def plan_stack(frames: list[DicomFrame], series_path: str | None = None) -> StackPlan:
    """Sort ``frames`` along the slice normal and derive spacing, origin and direction."""
    if not frames:
        raise NoImageDataError("the series holds no image frames", series_path)
    path = series_path or frames[0].path
    _check_sizes(frames, path)
    warnings: list[str] = []
    row_sp, col_sp = _pixel_spacing(frames, path, warnings)

    orientations = [f.orientation for f in frames]
    have_orientation = all(o is not None for o in orientations)
    if have_orientation:
        _check_same_orientation(frames, path)
        row, col, normal = _axes(frames[0].orientation, path)
    else:
        row, col, normal = np.eye(3)
    direction = tuple(np.column_stack([row, col, normal]).ravel().tolist())

    if not (have_orientation and all(f.position is not None for f in frames)):
        return _plan_without_positions(frames, (col_sp, row_sp), direction, have_orientation, warnings)

    positions = np.array([f.position for f in frames], dtype=float)
    along = positions @ normal
    instance = np.array([f.instance_number if f.instance_number is not None else 0 for f in frames])
    order = [int(i) for i in np.lexsort((instance, along))]
    order = _drop_copies(frames, order, along, path, warnings)

    if len(order) == 1:
        frame = frames[order[0]]
        thickness, source = _slice_spacing_from_header(frame, prefer_thickness=True)
        _note_header_tilt(frames, warnings, single=True)
        return StackPlan(
            slots=order,
            spacing=(col_sp, row_sp, thickness),
            origin=tuple(positions[order[0]].tolist()),
            direction=direction,
            positional=True,
            warnings=warnings,
            expected_spacing=thickness,
        )

    _check_tilt(frames, order, positions, normal, min(row_sp, col_sp), path)
    _note_header_tilt(frames, warnings, single=False)
    sorted_along = along[order]
    slots, spacing, gaps = _place_on_grid(sorted_along, order, frames, path)
    plan = StackPlan(
        slots=slots,
        spacing=(col_sp, row_sp, spacing),
        origin=tuple(positions[order[0]].tolist()),
        direction=direction,
        positional=True,
        warnings=warnings,
        gaps=gaps,
        expected_spacing=spacing,
    )
    if gaps:
        missing = sum(g.missing for g in gaps)
        where = ", ".join(
            f"{g.distance:.4g} mm after {g.after_position:.4g} mm" for g in gaps[:5]
        ) + (", ..." if len(gaps) > 5 else "")
        warnings.append(
            f"non-uniform slice spacing: gaps of {where} (along the slice normal), expected "
            f"{spacing:.4g} mm; {missing} slice(s) probably missing and filled with blank slices "
            "so the other slices keep their exact positions"
        )
    return plan


# -- checks -----------------------------------------------------------------------------
def _check_sizes(frames: list[DicomFrame], path: str) -> None:
    sizes = Counter((f.columns, f.rows) for f in frames)
    if len(sizes) > 1:
        found = ", ".join(f"{c}x{r} ({n} slice(s))" for (c, r), n in sizes.most_common())
        raise InconsistentSeriesError(f"slices have different sizes: {found}", path)
    samples = Counter(f.samples_per_pixel for f in frames)
    if len(samples) > 1:
        raise InconsistentSeriesError("slices mix colour and grayscale images", path)


def _pixel_spacing(frames: list[DicomFrame], path: str, warnings: list[str]) -> tuple[float, float]:
    spacings = [f.pixel_spacing for f in frames if f.pixel_spacing is not None]
    if not spacings:
        warnings.append("no PixelSpacing in the header: 1 mm pixels assumed")
        return 1.0, 1.0
    reference = np.asarray(spacings[0])
    # One vectorised comparison; the loop below only runs to name the first odd frame.
    if len(spacings) == len(frames) and np.allclose(np.asarray(spacings), reference, rtol=1e-3, atol=1e-4):
        return float(reference[0]), float(reference[1])
    for frame in frames:
        if frame.pixel_spacing is None or not np.allclose(frame.pixel_spacing, reference, rtol=1e-3, atol=1e-4):
            raise InconsistentSeriesError(
                f"slices have different pixel spacings: {_fmt(spacings[0])} in {frames[0].label} "
                f"but {_fmt(frame.pixel_spacing) if frame.pixel_spacing else 'none'} in {frame.label}",
                path,
            )
    return float(reference[0]), float(reference[1])


def _check_same_orientation(frames: list[DicomFrame], path: str) -> None:
    reference = np.asarray(frames[0].orientation)
    if float(np.max(np.abs(np.asarray([f.orientation for f in frames]) - reference))) <= 1e-3:
        return  # all alike: the loop below only runs to name the first odd frame
    for frame in frames[1:]:
        if np.max(np.abs(np.asarray(frame.orientation) - reference)) > 1e-3:
            raise InconsistentSeriesError(
                f"slices have different orientations: {_fmt(frames[0].orientation)} in "
                f"{frames[0].label} but {_fmt(frame.orientation)} in {frame.label}",
                path,
            )


def _axes(orientation, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal unit vectors; small round-off is cleaned, nonsense refused."""
    values = np.asarray(orientation, dtype=float)
    row, col = values[:3], values[3:]
    row_norm, col_norm = np.linalg.norm(row), np.linalg.norm(col)
    if abs(row_norm - 1) > ORIENTATION_TOLERANCE or abs(col_norm - 1) > ORIENTATION_TOLERANCE:
        raise InconsistentSeriesError(
            f"ImageOrientationPatient {_fmt(values)} does not hold unit vectors", path
        )
    row, col = row / row_norm, col / col_norm
    if abs(float(row @ col)) > ORIENTATION_TOLERANCE:
        raise InconsistentSeriesError(
            f"ImageOrientationPatient {_fmt(values)}: row and column directions are not perpendicular",
            path,
        )
    col = col - (row @ col) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _drop_copies(frames, order: list[int], along: np.ndarray, path: str, warnings: list[str]) -> list[int]:
    """Same file found twice: keep one. Different images at one position: refuse."""
    kept = [order[0]]
    for index in order[1:]:
        previous = kept[-1]
        if abs(along[index] - along[previous]) >= DUPLICATE_TOLERANCE:
            kept.append(index)
            continue
        a, b = frames[previous], frames[index]
        same_instance = a.sop_instance_uid and a.sop_instance_uid == b.sop_instance_uid and a.frame_index == b.frame_index
        if same_instance:
            warnings.append(f"{b.label} is a copy of {a.label} (same SOPInstanceUID); the copy was ignored")
            continue
        raise InconsistentSeriesError(
            f"two slices at the same position {_fmt(a.position)}: {a.label} and {b.label}. "
            "The series probably mixes several acquisitions (e.g. time points or echoes), "
            "which cannot be stacked into one volume",
            path,
        )
    return kept


def _check_tilt(frames, order: list[int], positions: np.ndarray, normal: np.ndarray, pixel: float, path: str) -> None:
    """Refuse stacks whose slices step sideways: the grid would be sheared."""
    offsets = positions[order] - positions[order[0]]
    along = offsets @ normal
    sideways = offsets - np.outer(along, normal)
    drift = np.linalg.norm(sideways, axis=1)
    tolerance = max(0.01, TILT_PIXEL_TOLERANCE * pixel)
    if float(drift.max()) <= tolerance:
        return
    angle = float(np.degrees(np.arctan2(drift[-1], along[-1])))
    header = [f.gantry_tilt for f in frames if f.gantry_tilt]
    header_note = f" (GantryDetectorTilt says {header[0]:g} degrees)" if header else ""
    raise InconsistentSeriesError(
        f"gantry tilt of {angle:.2f} degrees detected{header_note}: slice positions move "
        f"{drift.max():.3g} mm sideways instead of along the slice normal. The slices form a "
        "sheared grid that medviewer cannot represent, and it does not resample tilted series; "
        "resample the series to a regular grid with another tool first",
        path,
    )


def _note_header_tilt(frames, warnings: list[str], single: bool) -> None:
    tilts = {round(f.gantry_tilt, 3) for f in frames if f.gantry_tilt and abs(f.gantry_tilt) > 1e-3}
    if tilts:
        where = "the image" if single else "the slice positions lie along the slice normal"
        warnings.append(
            f"GantryDetectorTilt is {', '.join(f'{t:g}' for t in sorted(tilts))} degrees but {where}, "
            "so the volume is stored as an oblique grid without shear"
        )


def _place_on_grid(sorted_along: np.ndarray, order: list[int], frames, path: str):
    """Slot each slice on a regular grid; fill whole missing slices, refuse anything else.

    A grid is accepted when every slice lies within tolerance of its grid position (1 % of
    the spacing or 0.01 mm, or the precision the positions were written with, capped at
    10 % of the spacing). Testing
    positions rather than single distances tolerates round-off without letting drift
    accumulate.
    """
    distances = np.diff(sorted_along)
    quantum = _position_quantum([frames[i] for i in order])
    for base in (float(np.median(distances)), float(distances.min())):
        steps = np.rint(distances / base).astype(np.int64)
        if np.any(steps < 1):
            continue
        slot_of = np.concatenate([[0], np.cumsum(steps)])
        # First-to-last distance over the slot count keeps both ends exact.
        spacing = float((sorted_along[-1] - sorted_along[0]) / slot_of[-1])
        residual = np.abs(sorted_along - (sorted_along[0] + slot_of * spacing))
        tolerance = max(
            SPACING_ABSOLUTE_TOLERANCE, SPACING_RELATIVE_TOLERANCE * spacing, min(quantum, 0.1 * spacing)
        )
        if float(residual.max()) <= tolerance:
            break
    else:
        raise InconsistentSeriesError(_irregular_message(distances), path)

    missing = int(slot_of[-1]) - len(distances)
    if missing > len(order):
        raise InconsistentSeriesError(
            _irregular_message(distances)
            + f"; treating them as missing slices would need {missing} blank slices for "
            f"{len(order)} real ones",
            path,
        )
    slots: list[int | None] = [order[0]]
    gaps: list[Gap] = []
    for k, step in enumerate(steps):
        if step > 1:
            gaps.append(Gap(float(sorted_along[k]), float(distances[k]), int(step - 1)))
            slots.extend([None] * int(step - 1))
        slots.append(order[k + 1])
    return slots, spacing, gaps


def _position_quantum(frames) -> float:
    """Decimal step the positions were written with (0.1 for '-125.5\\-80.2\\33.7').

    The most decimals any value needs tells the writer's precision; a grid check must not
    be stricter than that round-off.
    """
    most = 0
    for frame in frames[:500]:
        for value in frame.position or ():
            decimals = 0
            while decimals < 8 and abs(value * 10**decimals - round(value * 10**decimals)) > 1e-3:
                decimals += 1
            most = max(most, decimals)
    return 10.0**-most


def _irregular_message(distances: np.ndarray) -> str:
    counts = Counter(round(float(d), 3) for d in distances)
    found = ", ".join(f"{d:g} mm x{n}" for d, n in sorted(counts.items())[:8])
    return (
        f"irregular slice spacing: distances between consecutive slices are {found}. They are "
        "not whole multiples of one spacing, so the slices do not lie on a regular grid "
        "(medviewer does not resample)"
    )


# -- fallbacks ------------------------------------------------------------------------------
def _slice_spacing_from_header(frame: DicomFrame, prefer_thickness: bool) -> tuple[float, str]:
    """Slice spacing when positions cannot tell: one slice, or frames without positions."""
    options = [("SliceThickness", frame.slice_thickness), ("SpacingBetweenSlices", frame.spacing_between_slices)]
    if not prefer_thickness:
        options.reverse()
    for name, value in options:
        if value:
            return float(value), name
    return 1.0, "default"


def _plan_without_positions(frames, pixel_xy, direction, have_orientation, warnings) -> StackPlan:
    """No usable ImagePositionPatient: stack in InstanceNumber (then file/frame) order."""
    order = sorted(
        range(len(frames)),
        key=lambda i: (
            frames[i].instance_number is None,
            frames[i].instance_number or 0,
            _natural(frames[i].path),
            frames[i].frame_index or 0,
        ),
    )
    first = frames[order[0]]
    single = len(frames) == 1
    spacing, source = _slice_spacing_from_header(first, prefer_thickness=single)
    origin = first.position or (0.0, 0.0, 0.0)
    if single:
        if not have_orientation or first.position is None:
            warnings.append(
                "no ImagePositionPatient/ImageOrientationPatient: the image is placed at the "
                "origin with identity orientation"
            )
    else:
        one_file = len({f.path for f in frames}) == 1
        what = (
            "multi-frame image without per-frame positions: frames stacked in file order"
            if one_file
            else f"no slice positions in {len(frames)} slices: stacked in InstanceNumber order"
        )
        spacing_note = f"{spacing:g} mm spacing from {source}" if source != "default" else "1 mm spacing assumed"
        orientation_note = "" if have_orientation else ", identity orientation"
        warnings.append(f"{what} with {spacing_note}{orientation_note}; physical positions may be wrong")
    return StackPlan(
        slots=order,
        spacing=(pixel_xy[0], pixel_xy[1], spacing),
        origin=tuple(float(v) for v in origin),
        direction=direction,
        positional=False,
        warnings=warnings,
        expected_spacing=spacing,
    )


def _natural(text: str) -> list:
    """Sort key that puts IM2 before IM10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
