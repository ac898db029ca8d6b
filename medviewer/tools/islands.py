"""Connected components: keep the largest, remove small ones, pick one, flood fill.

Flood fill "on the slice" fills what the view shows. On an array slice that is a 2D fill
of that slice. On an oblique reslice the shown plane cuts a thin tilted layer of voxels
(the circle brush's slab: every voxel whose cell the plane cuts); the fill spreads through
that layer only, with 3D neighbourhoods restricted to it. Two cut voxels sharing a face
have plane sections sharing an edge, so connectivity 1 (faces) joins sections that share an
edge (like 4-connectivity on a slice); 2 and 3 also join sections touching at a point (like
8-connectivity).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medviewer.model.editing import EditRefused, LabelCommand, SegmentEditor
from medviewer.model.events import Box
from medviewer.model.provenance import SlicePlane
from medviewer.tools.base import flat_to_box_mask, is_oblique_plane, label_box, nearest_voxel, plane_slab_voxels


def _structure(connectivity: int) -> np.ndarray:
    """3D neighbourhood: 1 = faces (6), 2 = faces+edges (18), 3 = all (26)."""
    return ndimage.generate_binary_structure(3, int(connectivity))


def keep_largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    components, count = ndimage.label(mask, _structure(connectivity))
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.reshape(-1))
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def remove_small_components(mask: np.ndarray, min_voxels: int, connectivity: int = 1) -> np.ndarray:
    """Drop every component with fewer than ``min_voxels`` voxels."""
    components, count = ndimage.label(mask, _structure(connectivity))
    if count == 0:
        return mask.copy()
    sizes = np.bincount(components.reshape(-1))
    keep = sizes >= int(min_voxels)
    keep[0] = False
    return keep[components]


def component_at(mask: np.ndarray, seed_zyx, connectivity: int = 1) -> np.ndarray:
    """The component of ``mask`` containing ``seed_zyx`` (empty if the seed is outside it)."""
    seed = tuple(int(v) for v in seed_zyx)
    if not mask[seed]:
        return np.zeros_like(mask, dtype=bool)
    components, _ = ndimage.label(mask, _structure(connectivity))
    return components == components[seed]


class IslandsTool:
    """Clean up a segment's disconnected pieces (Slicer's "Islands" effect)."""

    name = "islands"

    def __init__(self, editor: SegmentEditor, connectivity: int = 1):
        self.editor = editor
        self.connectivity = int(connectivity)

    def _segment(self, label: int | None) -> tuple[int, Box | None, np.ndarray | None]:
        label = self.editor.policy.active_label if label is None else label
        if label is None:
            raise EditRefused("select a segment first")
        box = label_box(self.editor.labelmap.array, label)
        if box is None:
            return label, None, None
        return label, box, self.editor.labelmap.array[box.slices] == label

    def _seed_in(self, point_lps, box: Box | None, mask: np.ndarray | None) -> tuple[int, int, int] | None:
        """Box-relative voxel of a click when it lies on the segment, else None."""
        seed = nearest_voxel(self.editor.geometry, point_lps)
        if mask is None or box is None or seed is None:
            return None
        local = tuple(s - b for s, b in zip(seed, box.start))
        if not all(0 <= v < n for v, n in zip(local, box.shape)) or not mask[local]:
            return None
        return local  # type: ignore[return-value]

    def keep_largest(self, label: int | None = None) -> LabelCommand | None:
        label, box, mask = self._segment(label)
        if mask is None:
            return None
        return self.editor.replace_segment(keep_largest_component(mask, self.connectivity), box, label,
                                           tool="keep largest island", parameters={"connectivity": self.connectivity})

    def remove_small(self, min_size_mm3: float, label: int | None = None) -> LabelCommand | None:
        """Remove islands smaller than ``min_size_mm3`` (converted with the voxel volume)."""
        label, box, mask = self._segment(label)
        if mask is None:
            return None
        min_voxels = max(1, int(np.ceil(float(min_size_mm3) / self.editor.geometry.voxel_volume_mm3)))
        return self.editor.replace_segment(remove_small_components(mask, min_voxels, self.connectivity), box, label,
                                           tool="remove small islands",
                                           parameters={"min_size_mm3": float(min_size_mm3), "min_voxels": min_voxels,
                                                       "connectivity": self.connectivity})

    def keep_selected(self, point_lps, label: int | None = None) -> LabelCommand | None:
        """Keep only the island under the click."""
        label, box, mask = self._segment(label)
        local = self._seed_in(point_lps, box, mask)
        if local is None:
            return None
        return self.editor.replace_segment(component_at(mask, local, self.connectivity), box, label,
                                           tool="keep selected island", parameters={"point_lps": [float(v) for v in point_lps]})

    def remove_selected(self, point_lps, label: int | None = None) -> LabelCommand | None:
        """Remove the island under the click."""
        label, box, mask = self._segment(label)
        local = self._seed_in(point_lps, box, mask)
        if local is None:
            return None
        keep = mask & ~component_at(mask, local, self.connectivity)
        return self.editor.replace_segment(keep, box, label, tool="remove selected island",
                                           parameters={"point_lps": [float(v) for v in point_lps]})


def flood_region(
    labels: np.ndarray,
    seed_zyx,
    intensities: np.ndarray | None = None,
    tolerance: float | None = None,
    plane: SlicePlane | None = None,
    connectivity: int = 1,
    geometry=None,
) -> tuple[Box, np.ndarray] | None:
    """Voxels connected to the seed that share its label (and its intensity within ``tolerance``).

    With ``plane`` the fill stays on that slice (2D), otherwise it spreads in 3D. An oblique
    physical plane (which needs ``geometry``) fills within the voxels the plane cuts; a seed
    off that layer fills nothing.
    """
    seed = tuple(int(v) for v in seed_zyx)
    if plane is not None and plane.is_physical and geometry is None:
        raise ValueError("a fill on a physical plane needs the grid's geometry")
    if geometry is not None and is_oblique_plane(geometry, plane):
        return _flood_on_plane(labels, seed, intensities, tolerance, geometry, plane, connectivity)
    if plane is not None:
        start = [0, 0, 0]
        stop = list(labels.shape)
        start[plane.axis], stop[plane.axis] = plane.index, plane.index + 1
        if seed[plane.axis] != plane.index:
            return None
        box = Box(tuple(start), tuple(stop))  # type: ignore[arg-type]
    else:
        box = Box.full(labels.shape)
    region = labels[box.slices]
    local = tuple(s - b for s, b in zip(seed, box.start))
    candidate = region == region[local]
    if intensities is not None and tolerance is not None:
        values = intensities[box.slices]
        centre = float(values[local])
        candidate &= np.abs(values.astype(np.float64) - centre) <= float(tolerance)
    if plane is not None:
        flat = np.take(candidate, 0, axis=plane.axis)
        seed2d = tuple(v for a, v in enumerate(local) if a != plane.axis)
        structure2d = ndimage.generate_binary_structure(2, min(int(connectivity), 2))
        components, _ = ndimage.label(flat, structure2d)
        mask = np.expand_dims(components == components[seed2d], plane.axis)
    else:
        components, _ = ndimage.label(candidate, _structure(connectivity))
        mask = components == components[local]
    tight = Box.from_mask(mask)
    if tight is None:
        return None
    out_box = tight.shifted(box.start)
    return out_box, mask[tight.slices]


def _flood_on_plane(
    labels, seed, intensities, tolerance, geometry, plane, connectivity
) -> tuple[Box, np.ndarray] | None:
    """The oblique-plane fill: candidates are gathered on the plane's voxel layer only."""
    slab = plane_slab_voxels(geometry, plane)
    seed_flat = int(np.ravel_multi_index(seed, labels.shape))
    where = int(np.searchsorted(slab, seed_flat))
    if where >= slab.size or slab[where] != seed_flat:
        return None
    values = np.take(labels, slab)
    candidate = values == labels[seed]
    if intensities is not None and tolerance is not None:
        scan = np.take(intensities, slab).astype(np.float64)
        candidate &= np.abs(scan - float(intensities[seed])) <= float(tolerance)
    nodes = slab[candidate]
    component = connected_voxels(nodes, seed_flat, labels.shape, connectivity)
    return flat_to_box_mask(labels.shape, component)


def connected_voxels(nodes: np.ndarray, seed_flat: int, shape, connectivity: int = 1) -> np.ndarray:
    """Flat indices of the component of ``seed_flat`` among ``nodes`` (sorted flat indices).

    A graph over the given voxels only, so a thin oblique layer costs what it holds rather
    than its 3D bounding box.
    """
    offsets = np.argwhere(_structure(connectivity)) - 1
    offsets = offsets[[tuple(o) > (0, 0, 0) for o in offsets]]  # each neighbour pair once
    coords = np.unravel_index(nodes, tuple(shape))
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    first, second = [], []
    for offset in offsets:
        inside = np.ones(nodes.size, dtype=bool)
        for axis, step in enumerate(offset):
            if step:
                moved = coords[axis] + step
                inside &= (moved >= 0) & (moved < shape[axis])
        neighbour = nodes + int(offset @ strides)
        at = np.minimum(np.searchsorted(nodes, neighbour), nodes.size - 1)
        linked = inside & (nodes[at] == neighbour)
        first.append(np.flatnonzero(linked))
        second.append(at[linked])
    rows, columns = np.concatenate(first), np.concatenate(second)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, columns)), shape=(nodes.size, nodes.size))
    _, component = connected_components(graph, directed=False)
    seed_index = int(np.searchsorted(nodes, seed_flat))
    return nodes[component == component[seed_index]]


class FloodFillTool:
    """Fill the connected region under a click with the active segment."""

    name = "flood fill"

    def __init__(self, editor: SegmentEditor, tolerance: float | None = None, connectivity: int = 1):
        self.editor = editor
        self.tolerance = tolerance
        self.connectivity = int(connectivity)

    def fill(self, point_lps, plane: SlicePlane | None = None) -> LabelCommand | None:
        """Fill from the voxel under the click: on ``plane`` (the view's slice) or in 3D."""
        geometry = self.editor.geometry
        seed_point = np.asarray(point_lps, dtype=float)
        if is_oblique_plane(geometry, plane):
            normal = np.asarray(plane.normal, dtype=float)  # the voxel under the click on the shown plane
            seed_point = seed_point - float((seed_point - np.asarray(plane.origin, dtype=float)) @ normal) * normal
        seed = nearest_voxel(geometry, seed_point)
        if seed is None:
            return None
        intensities = self.editor.volume.array if self.editor.volume is not None else None
        found = flood_region(self.editor.labelmap.array, seed, intensities, self.tolerance, plane, self.connectivity,
                             geometry)
        if found is None:
            return None
        box, mask = found
        parameters = {
            "point_lps": [float(v) for v in point_lps],
            "tolerance": self.tolerance,
            "plane": None if plane is None else plane.as_dict(),
        }
        return self.editor.apply(mask, box, tool=self.name, parameters=parameters)


__all__ = [
    "FloodFillTool",
    "IslandsTool",
    "component_at",
    "connected_voxels",
    "flood_region",
    "keep_largest_component",
    "remove_small_components",
]
