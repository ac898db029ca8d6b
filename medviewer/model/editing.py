"""The one path every label edit takes: policy check, write, undo command, provenance.

Brushes, threshold, islands, morphology, interpolation, logical operations and AI
acceptance all hand a boolean mask (inside a box) to :class:`SegmentEditor`. The editor
decides which voxels may change (active segment, locked segments, "empty only" /
"visible only" modes, an intensity range, inside/outside another segment), writes them,
emits the changed box, records one undoable command holding only the changed voxels and
appends a provenance entry to every segment the edit touched. Segment-table operations
(create, delete, merge, rename, recolour, reorder, lock) are undoable commands as well.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from medviewer.model.anatomy import anatomy_color, lookup_anatomy
from medviewer.model.events import Box
from medviewer.model.history import CallbackCommand, Command, EditHistory, VoxelDelta, default_budget
from medviewer.model.labelmap import LabelMap
from medviewer.model.provenance import ModelProvenance, now_iso
from medviewer.model.segments import DEFAULT_COLORS, ProvenanceEntry, Segment, SegmentTable

_RECORD_BYTES = 400  # rough size of one provenance entry, for the history budget
#: :meth:`SegmentEditor.apply` works voxel by voxel when under 1/8 of the mask's box is set.
_SPARSE_FRACTION = 8


class EditRefused(ValueError):
    """The edit is not allowed (no active segment, segment locked, ...); the message says why."""


class EditMode(StrEnum):
    """Which voxels a paint may take over from other segments."""

    EVERYWHERE = "everywhere"  # any voxel except those of locked segments
    EMPTY_ONLY = "empty"  # background voxels only
    VISIBLE_ONLY = "visible"  # background and voxels of visible segments (hidden ones are kept)


@dataclass
class EditPolicy:
    """The user's editing settings; every tool and the AI acceptance obey the same rules.

    ``erase_all_segments`` makes erasing remove any unlocked segment instead of only the
    active one. ``intensity_range`` restricts edits to voxels whose scan value lies in
    [low, high] (threshold paint). ``inside_label`` / ``outside_label`` restrict edits to
    inside / outside another segment.
    """

    active_label: int | None = None
    mode: EditMode = EditMode.EVERYWHERE
    intensity_range: tuple[float, float] | None = None
    inside_label: int | None = None
    outside_label: int | None = None
    erase_all_segments: bool = False

    def describe(self) -> dict[str, Any]:
        """The restrictions in force, for provenance records (empty when none)."""
        out: dict[str, Any] = {}
        if self.mode != EditMode.EVERYWHERE:
            out["mode"] = str(self.mode)
        if self.intensity_range is not None:
            out["intensity_range"] = [float(v) for v in self.intensity_range]
        if self.inside_label is not None:
            out["inside_label"] = int(self.inside_label)
        if self.outside_label is not None:
            out["outside_label"] = int(self.outside_label)
        if self.erase_all_segments:
            out["erase_all_segments"] = True
        return out

    def writable(
        self,
        current: np.ndarray,
        segments: SegmentTable,
        label: int,
        erase: bool = False,
        intensities: np.ndarray | None = None,
    ) -> np.ndarray:
        """Voxels of ``current`` (a label region) that writing ``label`` (0 when erasing) may change."""
        locked = [s.label for s in segments if s.locked]
        hidden = [s.label for s in segments if not s.visible]
        if erase:
            if self.erase_all_segments:
                allowed = current != 0
                if self.mode == EditMode.VISIBLE_ONLY and hidden:
                    allowed &= ~np.isin(current, hidden)
            else:
                allowed = current == label
            if locked:
                allowed &= ~np.isin(current, locked)
        else:
            allowed = current != label
            if locked:
                allowed &= ~np.isin(current, locked)
            if self.mode == EditMode.EMPTY_ONLY:
                allowed &= current == 0
            elif self.mode == EditMode.VISIBLE_ONLY and hidden:
                allowed &= ~np.isin(current, hidden)
        if self.inside_label is not None:
            allowed &= current == self.inside_label
        if self.outside_label is not None:
            allowed &= current != self.outside_label
        if self.intensity_range is not None and intensities is not None:
            low, high = self.intensity_range
            allowed &= (intensities >= low) & (intensities <= high)
        return allowed


class LabelCommand(Command):
    """Voxel changes of one edit plus the provenance entries it added."""

    def __init__(
        self,
        description: str,
        labelmap: LabelMap,
        segments: SegmentTable,
        delta: VoxelDelta,
        records: list[tuple[int, ProvenanceEntry]],
    ):
        self.description = description
        self.labelmap = labelmap
        self.segments = segments
        self.delta = delta
        self.records = records

    @property
    def voxels_changed(self) -> int:
        return self.delta.count

    @property
    def box(self) -> Box:
        return self.delta.box

    def apply(self) -> None:
        self.delta.restore_new(self.labelmap)
        self.add_records()

    def revert(self) -> None:
        self.delta.restore_old(self.labelmap)
        for label, entry in reversed(self.records):
            self.segments.unrecord(label, entry)

    def add_records(self) -> None:
        for label, entry in self.records:
            if label in self.segments:
                self.segments.record(label, entry)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.delta.nbytes + _RECORD_BYTES * len(self.records)


@dataclass
class _Stroke:
    label: int
    erase: bool
    tool: str
    parameters: dict[str, Any]
    kind: str
    details: dict[str, Any]
    indices: list[np.ndarray] = field(default_factory=list)
    old: list[np.ndarray] = field(default_factory=list)


class SegmentEditor:
    """Edits one segmentation (label map + segment table) with undo and provenance.

    The GUI keeps one editor per segmentation, sets ``policy`` from its controls, calls
    the tools (which call :meth:`apply` / :meth:`replace_segment` / the stroke methods),
    and binds Ctrl+Z / Ctrl+Shift+Z to :meth:`undo` / :meth:`redo`.
    """

    def __init__(
        self,
        labelmap: LabelMap,
        segments: SegmentTable,
        volume=None,
        history: EditHistory | None = None,
        policy: EditPolicy | None = None,
    ):
        self.labelmap = labelmap
        self.segments = segments
        self.volume = volume
        if history is None:
            history = EditHistory(default_budget(volume.nbytes if volume is not None else labelmap.array.nbytes))
        self.history = history
        self.policy = policy or EditPolicy()
        self._stroke: _Stroke | None = None

    @classmethod
    def for_document(cls, document, volume=None) -> SegmentEditor:
        """Editor for ``volume``'s segmentation in ``document`` (sharing its history)."""
        volume = volume or document.active_volume
        seg = document.segmentation(volume)
        return cls(seg.labelmap, seg.segments, volume, seg.history)

    # -- helpers --------------------------------------------------------------------------------
    @property
    def geometry(self):
        return self.labelmap.geometry

    def _intensities(self, box: Box) -> np.ndarray | None:
        if self.volume is None or self.policy.intensity_range is None:
            return None
        return self.volume.array[box.slices]

    def _intensities_at(self, flat: np.ndarray) -> np.ndarray | None:
        """Scan values at flat voxel indices, when the policy restricts by intensity."""
        if self.volume is None or self.policy.intensity_range is None:
            return None
        return np.take(self.volume.array, flat)

    def _target_label(self, label: int | None, erase: bool = False) -> int:
        label = self.policy.active_label if label is None else int(label)
        if label is None or label == 0:
            if erase and self.policy.erase_all_segments:
                return 0
            raise EditRefused("select a segment to edit first")
        segment = self.segments.get(label)
        if segment is None:
            raise EditRefused(f"there is no segment with label {label}")
        if segment.locked:
            raise EditRefused(f"segment {segment.name!r} is locked; unlock it to edit it")
        return label

    def _normalize(self, mask: np.ndarray, box: Box | None) -> tuple[np.ndarray, Box]:
        mask = np.asarray(mask, dtype=bool)
        if box is None:
            if tuple(mask.shape) != tuple(self.labelmap.shape):
                raise ValueError(f"a mask without a box must cover the whole grid {self.labelmap.shape}, got {mask.shape}")
            box = Box.full(mask.shape)
        if tuple(mask.shape) != tuple(box.shape):
            raise ValueError(f"mask shape {mask.shape} does not match its box {box.shape}")
        clipped = _clip(box, self.labelmap.shape)
        if clipped is None:
            return np.zeros((0, 0, 0), bool), Box((0, 0, 0), (0, 0, 0))
        if clipped != box:
            inner = tuple(slice(a - b, c - b) for a, b, c in zip(clipped.start, box.start, clipped.stop))
            mask, box = mask[inner], clipped
        return mask, box

    def _records(
        self, delta: VoxelDelta, label: int, kind: str, tool: str, parameters: dict, details: dict | None
    ) -> list[tuple[int, ProvenanceEntry]]:
        """One entry for the edited segment, one for each segment that lost voxels to it."""
        time = now_iso()
        lost = delta.old_label_counts()
        gained = delta.new_label_counts()
        records = []
        info = {"tool": tool, "parameters": _plain(parameters)}
        if label:
            main = {
                **info,
                "voxels_changed": delta.count,
                "voxels_added": gained.get(label, 0),
                "voxels_removed": lost.get(label, 0),
                "overwrote": {str(k): v for k, v in lost.items() if k not in (0, label)},
                "box_zyx": [list(delta.box.start), list(delta.box.stop)],
                **({"policy": self.policy.describe()} if self.policy.describe() else {}),
                **(details or {}),
            }
            records.append((label, ProvenanceEntry(kind, time, main)))
        for other, count in lost.items():
            if other in (0, label) or other not in self.segments:
                continue
            records.append(
                (other, ProvenanceEntry(kind, time, {**info, "voxels_removed": count, "overwritten_by": label or 0}))
            )
        return records

    def _commit(self, delta: VoxelDelta | None, label: int, description: str, kind: str, tool: str,
                parameters: dict, details: dict | None, already_written: bool = False) -> LabelCommand | None:
        if delta is None or delta.count == 0:
            return None
        command = LabelCommand(description, self.labelmap, self.segments, delta,
                               self._records(delta, label, kind, tool, parameters, details))
        if already_written:
            command.add_records()
        else:
            command.apply()
        self.history.push(command)
        return command

    # -- the single edit path ------------------------------------------------------------------
    def change_mask(
        self, mask: np.ndarray, box: Box | None = None, label: int | None = None, erase: bool = False
    ) -> tuple[np.ndarray, Box]:
        """Which voxels of ``mask`` an apply would really change, without writing (for previews)."""
        target = self._target_label(label, erase)
        mask, box = self._normalize(mask, box)
        current = self.labelmap.array[box.slices]
        allowed = self.policy.writable(current, self.segments, target, erase, self._intensities(box))
        return mask & allowed, box

    def apply(
        self,
        mask: np.ndarray,
        box: Box | None = None,
        label: int | None = None,
        *,
        erase: bool = False,
        tool: str = "edit",
        parameters: dict | None = None,
        kind: str = "manual",
        details: dict | None = None,
        description: str | None = None,
    ) -> LabelCommand | None:
        """Paint ``label`` (default: the active segment) where ``mask`` is true, or erase it.

        Returns the recorded command, or None when no voxel changed (nothing is recorded).
        """
        if self._stroke is not None:
            self.end_stroke()
        target = self._target_label(label, erase)
        mask, box = self._normalize(mask, box)
        if mask.size and np.count_nonzero(mask) * _SPARSE_FRACTION < mask.size:
            delta = self._sparse_delta(mask, box, target, erase)  # e.g. a fill on an oblique plane
        else:
            delta = self._dense_delta(mask, box, target, erase)
        description = description or f"{'Erase' if erase else 'Paint'} ({tool})"
        return self._commit(delta, target, description, kind, tool, parameters or {}, details)

    def _dense_delta(self, mask: np.ndarray, box: Box, target: int, erase: bool) -> VoxelDelta | None:
        """What painting ``mask`` would change, worked out over its box."""
        tight = Box.from_mask(mask) if mask.size else None
        if tight is None:
            return None
        mask = mask[tight.slices]  # a whole-volume AI or threshold mask shrinks to what it covers
        box = tight.shifted(box.start)
        change, box = self.change_mask(mask, box, target, erase)
        if box.is_empty or not change.any():
            return None
        old = self.labelmap.array[box.slices][change]
        return VoxelDelta.from_mask(box, change, old, 0 if erase else target)

    def _sparse_delta(self, mask: np.ndarray, box: Box, target: int, erase: bool) -> VoxelDelta | None:
        """The same as :meth:`_dense_delta`, worked out on the mask's voxels only (a mostly empty box)."""
        _, flat = _mask_voxels(mask, box, self.labelmap.shape)
        current = np.take(self.labelmap.array, flat)
        allowed = self.policy.writable(current, self.segments, target, erase, self._intensities_at(flat))
        if not allowed.any():
            return None
        return VoxelDelta.from_global(self.labelmap.shape, flat[allowed], current[allowed], 0 if erase else target)

    def replace_segment(
        self,
        new_mask: np.ndarray,
        box: Box | None = None,
        label: int | None = None,
        *,
        tool: str = "edit",
        parameters: dict | None = None,
        kind: str = "manual",
        details: dict | None = None,
        description: str | None = None,
    ) -> LabelCommand | None:
        """Make the segment equal ``new_mask`` inside ``box``: add what is new, remove what is gone.

        Additions obey the policy (locked / hidden / empty-only / intensity rules); removals
        only ever touch the segment's own voxels.
        """
        if self._stroke is not None:
            self.end_stroke()
        target = self._target_label(label)
        new_mask, box = self._normalize(new_mask, box)
        if box.is_empty:
            return None
        current = self.labelmap.array[box.slices]
        add = new_mask & self.policy.writable(current, self.segments, target, False, self._intensities(box))
        remove = (current == target) & ~new_mask
        change = add | remove
        if not change.any():
            return None
        old = current[change]
        new = np.where(add[change], target, 0).astype(current.dtype if target <= np.iinfo(current.dtype).max else np.uint16)
        delta = VoxelDelta.from_mask(box, change, old, new)
        return self._commit(delta, target, description or tool[:1].upper() + tool[1:], kind, tool, parameters or {}, details)

    def accept_ai_result(
        self,
        mask: np.ndarray,
        box: Box | None = None,
        label: int | None = None,
        *,
        model: ModelProvenance,
        prompts: list[dict] | None = None,
        parameters: dict | None = None,
        replace: bool = False,
    ) -> LabelCommand | None:
        """Accept a model's mask into a segment: one undoable step with the model's provenance.

        ``prompts`` are already in physical coordinates (see
        :func:`medviewer.model.provenance.prompt_to_physical`). ``replace`` makes the segment
        equal the mask inside ``box`` (a refined prediction); otherwise the mask is added.
        """
        details = {"model": model.as_dict(), "prompts": list(prompts or []), "accepted_at": now_iso()}
        tool = f"ai:{model.model_id}"
        description = f"Accept {model.name or model.model_id} result"
        if replace:
            return self.replace_segment(mask, box, label, tool=tool, parameters=parameters, kind="ai", details=details,
                                        description=description)
        return self.apply(mask, box, label, tool=tool, parameters=parameters, kind="ai", details=details,
                          description=description)

    # -- strokes: one command per drag ---------------------------------------------------------------
    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def begin_stroke(self, tool: str = "brush", parameters: dict | None = None, label: int | None = None,
                     erase: bool = False, kind: str = "manual", details: dict | None = None) -> None:
        """Start a drag: every :meth:`stroke_apply` until :meth:`end_stroke` is one undo step."""
        if self._stroke is not None:
            self.end_stroke()
        target = self._target_label(label, erase)
        self._stroke = _Stroke(target, erase, tool, dict(parameters or {}), kind, dict(details or {}))

    def stroke_apply(self, mask: np.ndarray, box: Box | None = None) -> int:
        """Paint one dab of the current stroke immediately (views update); returns voxels changed.

        Works on the dab's voxels only (gathered by flat index), not on its whole box: a wide
        circle on an oblique plane is a thin tilted disc whose box is mostly empty, so the
        policy, the undo record and the write all cost what the dab covers.
        """
        stroke = self._stroke
        if stroke is None:
            raise RuntimeError("stroke_apply() outside begin_stroke()/end_stroke()")
        self._target_label(stroke.label, stroke.erase)  # refuses when the segment was locked mid-drag
        mask, box = self._normalize(mask, box)
        if box.is_empty:
            return 0
        coords, flat = _mask_voxels(mask, box, self.labelmap.shape)
        if flat.size == 0:
            return 0
        current = np.take(self.labelmap.array, flat)
        intensities = self._intensities_at(flat)
        allowed = self.policy.writable(current, self.segments, stroke.label, stroke.erase, intensities)
        flat = flat[allowed]
        if flat.size == 0:
            return 0
        value = 0 if stroke.erase else stroke.label
        if value:
            self.labelmap.ensure_capacity(value)
        stroke.old.append(current[allowed])
        stroke.indices.append(flat)
        _put(self.labelmap.array, flat, value)
        changed = [c[allowed] for c in coords]
        self.labelmap.notify(Box(tuple(int(c.min()) for c in changed),  # type: ignore[arg-type]
                                 tuple(int(c.max()) + 1 for c in changed)))
        return int(flat.size)

    def end_stroke(self) -> LabelCommand | None:
        """Finish the drag and record it as one command (None when it changed nothing)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or not stroke.indices:
            return None
        indices = np.concatenate(stroke.indices)
        old = np.concatenate(stroke.old)
        unique, first = np.unique(indices, return_index=True)  # first touch keeps the true old value
        old = old[first]
        new = np.take(self.labelmap.array, unique)
        keep = old != new
        delta = VoxelDelta.from_global(self.labelmap.shape, unique[keep], old[keep], new[keep])
        verb = "Erase" if stroke.erase else "Paint"
        return self._commit(delta, stroke.label, f"{verb} ({stroke.tool})", stroke.kind, stroke.tool,
                            stroke.parameters, stroke.details, already_written=True)

    def cancel_stroke(self) -> None:
        """Abandon the drag and put back every voxel it changed (Escape during a drag)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or not stroke.indices:
            return
        for indices, old in zip(reversed(stroke.indices), reversed(stroke.old)):
            _put(self.labelmap.array, indices, old)
        coords = np.unravel_index(np.concatenate(stroke.indices), self.labelmap.shape)
        low, high = [int(c.min()) for c in coords], [int(c.max()) + 1 for c in coords]
        self.labelmap.notify(Box(tuple(low), tuple(high)))  # type: ignore[arg-type]

    # -- undo / redo ---------------------------------------------------------------------------
    def undo(self) -> Command | None:
        if self._stroke is not None:
            self.end_stroke()
        return self.history.undo()

    def redo(self) -> Command | None:
        if self._stroke is not None:
            return None
        return self.history.redo()

    # -- segments --------------------------------------------------------------------------------
    def create_segment(self, name: str | None = None, color: tuple[int, int, int] | None = None,
                       label: int | None = None, make_active: bool = True, source: str = "user") -> Segment:
        """New empty segment; a known anatomical name gets its standard colour and terminology."""
        label = self.segments.next_free_label() if label is None else int(label)
        if color is None:
            color = anatomy_color(name) or DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]
        segment = self.segments.add(name, tuple(int(c) for c in color), label=label)  # type: ignore[arg-type]
        entry = lookup_anatomy(segment.name)
        if entry is not None:
            segment.tags.setdefault("TerminologyEntry", entry.slicer_terminology())
        segment.provenance.append(ProvenanceEntry("create", now_iso(), {"name": segment.name, "source": source}))
        index = self.segments.index_of(label)
        previous_active = self.policy.active_label

        def apply():
            self.segments.insert(segment, index)
            if make_active:
                self.policy.active_label = label

        def revert():
            self.segments.remove(label)
            if self.policy.active_label == label:
                self.policy.active_label = previous_active

        if make_active:
            self.policy.active_label = label
        self.history.push(CallbackCommand(f"Create segment {segment.name!r}", apply, revert))
        return segment

    def delete_segment(self, label: int) -> None:
        """Remove a segment and its voxels; undo brings both back."""
        segment = self._unlocked(label, "delete")
        index = self.segments.index_of(label)
        delta = self._voxels_of([label], 0)

        def apply():
            if delta is not None:
                delta.restore_new(self.labelmap)
            self.segments.remove(label)
            if self.policy.active_label == label:
                self.policy.active_label = None

        def revert():
            self.segments.insert(segment, index)
            if delta is not None:
                delta.restore_old(self.labelmap)

        apply()
        self.history.push(CallbackCommand(f"Delete segment {segment.name!r}", apply, revert, delta.nbytes if delta else 0))

    def merge_segments(self, labels: list[int], into: int) -> None:
        """Move the voxels of ``labels`` into segment ``into`` and remove those segments."""
        target = self._unlocked(into, "merge into")
        sources = [int(v) for v in labels if int(v) != into]
        if not sources:
            return
        removed = [(self._unlocked(v, "merge"), self.segments.index_of(v)) for v in sources]
        delta = self._voxels_of(sources, into)
        entry = ProvenanceEntry("merge", now_iso(), {
            "merged": [
                {"label": s.label, "name": s.name, "provenance": [_entry_dict(e) for e in s.provenance]}
                for s, _ in removed
            ],
            "voxels_added": delta.count if delta else 0,
        })

        def apply():
            if delta is not None:
                delta.restore_new(self.labelmap)
            for segment, _ in removed:
                self.segments.remove(segment.label)
            self.segments.record(into, entry)

        def revert():
            self.segments.unrecord(into, entry)
            for segment, index in removed:
                self.segments.insert(segment, index)
            if delta is not None:
                delta.restore_old(self.labelmap)

        apply()
        names = ", ".join(repr(s.name) for s, _ in removed)
        self.history.push(CallbackCommand(f"Merge {names} into {target.name!r}", apply, revert,
                                          (delta.nbytes if delta else 0) + _RECORD_BYTES))

    def rename_segment(self, label: int, name: str, update_color: bool = True) -> None:
        """Rename; when the colour was automatic and the new name is a known structure, recolour too."""
        segment = self.segments[label]
        name = name.strip()
        if not name or name == segment.name:
            return
        old_name, old_color = segment.name, segment.color
        old_tags = dict(segment.tags)
        new_color = old_color
        if update_color and _color_is_automatic(segment):
            new_color = anatomy_color(name) or old_color
        new_tags = dict(old_tags)
        entry = lookup_anatomy(name)
        if entry is not None:
            new_tags["TerminologyEntry"] = entry.slicer_terminology()
        elif lookup_anatomy(old_name) is not None:
            new_tags.pop("TerminologyEntry", None)

        record = ProvenanceEntry("rename", now_iso(), {"from": old_name, "to": name})

        def apply():
            self.segments.update(label, name=name, color=new_color, tags=dict(new_tags))
            self.segments.record(label, record)

        def revert():
            self.segments.unrecord(label, record)
            self.segments.update(label, name=old_name, color=old_color, tags=dict(old_tags))

        command = CallbackCommand(f"Rename segment to {name!r}", apply, revert, _RECORD_BYTES)
        command.apply()
        self.history.push(command)

    def recolor_segment(self, label: int, color: tuple[int, int, int]) -> None:
        segment = self.segments[label]
        color = tuple(int(np.clip(c, 0, 255)) for c in color)  # type: ignore[assignment]
        if color == tuple(segment.color):
            return
        old = segment.color
        command = CallbackCommand(
            f"Recolour segment {segment.name!r}",
            lambda: self.segments.update(label, color=color),
            lambda: self.segments.update(label, color=old),
            merge_key=("recolor", label),
        )
        command.apply()
        self.history.push(command)

    def move_segment(self, label: int, index: int) -> None:
        """Reorder: put the segment at ``index`` of the list."""
        old_index = self.segments.index_of(label)
        index = max(0, min(int(index), len(self.segments) - 1))
        if index == old_index:
            return
        command = CallbackCommand(
            f"Move segment {self.segments[label].name!r}",
            lambda: self.segments.move(label, index),
            lambda: self.segments.move(label, old_index),
        )
        command.apply()
        self.history.push(command)

    def set_locked(self, label: int, locked: bool) -> None:
        segment = self.segments[label]
        if segment.locked == bool(locked):
            return
        command = CallbackCommand(
            f"{'Lock' if locked else 'Unlock'} segment {segment.name!r}",
            lambda: self.segments.update(label, locked=bool(locked)),
            lambda: self.segments.update(label, locked=not locked),
        )
        command.apply()
        self.history.push(command)

    def set_visible(self, label: int, visible: bool) -> None:
        """Show or hide a segment; a view setting, so it is not an undo step."""
        if self.segments[label].visible != bool(visible):
            self.segments.update(label, visible=bool(visible))

    def import_segments(self, labels: np.ndarray, segments: list[Segment], source: str) -> dict[int, int]:
        """Add segments read from a file (``labels`` on this grid) as one undoable step.

        Incoming label values are renumbered to free labels so nothing already here is
        merged by accident; voxels of locked segments are kept. Returns {file label: new label}.
        """
        labels = np.asarray(labels)
        if tuple(labels.shape) != tuple(self.labelmap.shape):
            raise ValueError(f"imported labels {labels.shape} are not on this grid {self.labelmap.shape}")
        incoming = {s.label: s for s in segments}
        for value in np.unique(labels):
            if value and int(value) not in incoming:
                incoming[int(value)] = Segment(int(value), f"Segment {int(value)}",
                                               DEFAULT_COLORS[(int(value) - 1) % len(DEFAULT_COLORS)])
        mapping: dict[int, int] = {}
        used = set(self.segments.labels())
        created = []
        for old_label, segment in incoming.items():
            new_label = 1
            while new_label in used:
                new_label += 1
            used.add(new_label)
            mapping[old_label] = new_label
            copy_ = Segment(new_label, segment.name, tuple(segment.color), segment.visible, False,  # type: ignore[arg-type]
                            list(segment.provenance), dict(segment.tags))
            copy_.provenance.append(ProvenanceEntry("import", now_iso(), {"source": source, "label_in_file": old_label}))
            created.append(copy_)
        lut = np.zeros(max(incoming, default=0) + 1, dtype=np.uint16)
        for old_label, new_label in mapping.items():
            lut[old_label] = new_label
        current = self.labelmap.array
        write = labels != 0
        locked = [s.label for s in self.segments if s.locked]
        if locked:
            write &= ~np.isin(current, locked)
        box = Box.from_mask(write)
        delta = None
        if box is not None:
            sub = write[box.slices]
            new_values = lut[labels[box.slices][sub]]
            old_values = current[box.slices][sub]
            changed = new_values != old_values
            sub[sub] = changed
            if changed.any():
                delta = VoxelDelta.from_mask(box, sub, old_values[changed], new_values[changed])

        def apply():
            for segment in created:
                self.segments.insert(segment)
            if delta is not None:
                delta.restore_new(self.labelmap)

        def revert():
            if delta is not None:
                delta.restore_old(self.labelmap)
            for segment in created:
                self.segments.remove(segment.label)

        apply()
        self.history.push(CallbackCommand(f"Import {len(created)} segment(s) from {source}", apply, revert,
                                          (delta.nbytes if delta else 0) + _RECORD_BYTES * len(created)))
        return mapping

    # -- segment helpers --------------------------------------------------------------------------
    def _unlocked(self, label: int, action: str) -> Segment:
        segment = self.segments.get(label)
        if segment is None:
            raise EditRefused(f"there is no segment with label {label}")
        if segment.locked:
            raise EditRefused(f"cannot {action} segment {segment.name!r}: it is locked")
        return segment

    def _voxels_of(self, labels: list[int], new_value: int) -> VoxelDelta | None:
        """Delta turning every voxel of ``labels`` into ``new_value`` (not applied)."""
        array = self.labelmap.array
        mask = np.isin(array, labels) if len(labels) > 1 else array == labels[0]
        box = Box.from_mask(mask)
        if box is None:
            return None
        sub = mask[box.slices]
        return VoxelDelta.from_mask(box, sub, array[box.slices][sub], new_value)


def _clip(box: Box, shape) -> Box | None:
    start = tuple(max(0, int(a)) for a in box.start)
    stop = tuple(min(int(s), int(b)) for s, b in zip(shape, box.stop))
    if any(b <= a for a, b in zip(start, stop)):
        return None
    return Box(start, stop)  # type: ignore[arg-type]


def _mask_voxels(mask: np.ndarray, box: Box, shape) -> tuple[list[np.ndarray], np.ndarray]:
    """Array coordinates (z, y, x) and flat indices (C order, ascending) of the true voxels of
    ``mask``, which covers ``box`` of an array of ``shape``."""
    local = np.flatnonzero(mask)  # far cheaper than a 3D np.nonzero over the box
    z, rest = np.divmod(local, box.shape[1] * box.shape[2])
    y, x = np.divmod(rest, box.shape[2])
    coords = [z + box.start[0], y + box.start[1], x + box.start[2]]
    return coords, (coords[0] * shape[1] + coords[1]) * shape[2] + coords[2]


def _put(array: np.ndarray, flat: np.ndarray, values) -> None:
    """``array.flat[flat] = values``, through a flat view when there is one (``np.put`` is ~40x slower)."""
    if array.flags.c_contiguous:
        array.reshape(-1)[flat] = values
    else:
        np.put(array, flat, values)


def _color_is_automatic(segment: Segment) -> bool:
    """True when the colour came from the default cycle or the anatomy table, not the user."""
    default = DEFAULT_COLORS[(segment.label - 1) % len(DEFAULT_COLORS)]
    return tuple(segment.color) in (tuple(default), anatomy_color(segment.name))


def _entry_dict(entry: ProvenanceEntry) -> dict[str, Any]:
    return {"kind": entry.kind, "time": entry.time, "details": copy.deepcopy(entry.details)}


def _plain(value: Any) -> Any:
    """Parameters as JSON-friendly values (numpy scalars and tuples become Python ones)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, StrEnum):
        return str(value)
    return value
