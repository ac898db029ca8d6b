"""Undo/redo as small commands capped by a byte budget.

An edit never copies a whole segment or label map: a :class:`VoxelDelta` keeps only the
voxels that changed inside the edit's bounding box (their positions as a bit mask or as
offsets, whichever is smaller, plus old and new values), zlib-compressed when that pays.
This is napari's masked paint atom and ITK-SNAP's budgeted deltas in one: a whole brush
drag becomes one delta, a no-op edit is never recorded, and when the history holds more
bytes than its budget the oldest commands are dropped first.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable

import numpy as np

from medviewer.model.events import Box, Event
from medviewer.model.labelmap import LabelMap

#: Payloads smaller than this stay uncompressed (zlib's header would eat the gain).
COMPRESS_MIN_BYTES = 256

#: Default budget as a share of the volume's bytes, and the floor for tiny volumes.
DEFAULT_BUDGET_FRACTION = 0.10
MIN_BUDGET_BYTES = 1 << 20

_COMMAND_OVERHEAD_BYTES = 200  # Python object headers: counted so empty commands still cost


def default_budget(volume_nbytes: int) -> int:
    """10 % of the scan's bytes, never less than 1 MiB."""
    return max(MIN_BUDGET_BYTES, int(volume_nbytes * DEFAULT_BUDGET_FRACTION))


class _Payload:
    """A numpy array stored as (optionally zlib-compressed) bytes."""

    __slots__ = ("data", "compressed", "dtype", "size")

    def __init__(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        raw = array.tobytes()
        self.compressed = False
        if len(raw) >= COMPRESS_MIN_BYTES:
            packed = zlib.compress(raw, 1)
            if len(packed) < len(raw):
                raw, self.compressed = packed, True
        self.data = raw
        self.dtype = array.dtype
        self.size = array.size

    def array(self) -> np.ndarray:
        raw = zlib.decompress(self.data) if self.compressed else self.data
        return np.frombuffer(raw, dtype=self.dtype, count=self.size)

    @property
    def nbytes(self) -> int:
        return len(self.data)


class VoxelDelta:
    """Which voxels of ``box`` changed, with their values before and after.

    Positions are kept as a packed bit mask of the box when the change is dense and as
    box-relative flat offsets when it is sparse; both list voxels in C order so values line
    up with ``region[mask]``.
    """

    __slots__ = ("box", "count", "_where", "_as_mask", "_old", "_new", "_new_scalar")

    def __init__(self, box: Box, flat: np.ndarray, old: np.ndarray, new: np.ndarray | int):
        self.box = box
        self.count = int(flat.size)
        voxels = int(np.prod(box.shape))
        self._as_mask = voxels // 8 < flat.size * 4
        if self._as_mask:
            mask = np.zeros(voxels, dtype=bool)
            mask[flat] = True
            self._where = _Payload(np.packbits(mask))
        else:
            self._where = _Payload(flat.astype(np.uint32 if voxels < 2**32 else np.int64))
        self._old = _Payload(old)
        new_array = np.asarray(new)
        if new_array.ndim == 0 or (new_array.size and np.all(new_array == new_array.flat[0])):
            self._new_scalar: int | None = int(new_array.reshape(-1)[0]) if new_array.size else 0
            self._new: _Payload | None = None
        else:
            self._new_scalar = None
            self._new = _Payload(new_array)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_mask(cls, box: Box, mask: np.ndarray, old: np.ndarray, new: np.ndarray | int) -> VoxelDelta | None:
        """Delta for ``mask`` (box-shaped) with values listed in C order; None when nothing changed.

        The box is shrunk to the changed voxels first, so a big box with a small edit
        stays small.
        """
        tight = Box.from_mask(mask)
        if tight is None:
            return None
        sub = mask[tight.slices]
        flat = np.flatnonzero(sub)
        start = tuple(a + b for a, b in zip(box.start, tight.start))
        stop = tuple(a + b for a, b in zip(box.start, tight.stop))
        return cls(Box(start, stop), flat, np.asarray(old), new)  # type: ignore[arg-type]

    @classmethod
    def from_global(cls, shape, flat_global: np.ndarray, old: np.ndarray, new: np.ndarray) -> VoxelDelta | None:
        """Delta from flat indices into a whole array of ``shape`` (sorted, unique)."""
        if flat_global.size == 0:
            return None
        coords = np.unravel_index(flat_global, shape)
        start = tuple(int(c.min()) for c in coords)
        stop = tuple(int(c.max()) + 1 for c in coords)
        box = Box(start, stop)  # type: ignore[arg-type]
        local = np.ravel_multi_index(tuple(c - s for c, s in zip(coords, start)), box.shape)
        order = np.argsort(local, kind="stable")
        new_values = new if np.ndim(new) == 0 else np.asarray(new)[order]
        return cls(box, local[order], np.asarray(old)[order], new_values)

    # -- reading ---------------------------------------------------------------------------
    def mask(self) -> np.ndarray:
        """Changed voxels as a boolean array of the box's shape."""
        shape = self.box.shape
        if self._as_mask:
            voxels = int(np.prod(shape))
            return np.unpackbits(self._where.array(), count=voxels).astype(bool).reshape(shape)
        mask = np.zeros(shape, dtype=bool)
        mask.reshape(-1)[self._where.array().astype(np.int64)] = True
        return mask

    def old_values(self) -> np.ndarray:
        return self._old.array()

    def new_values(self) -> np.ndarray:
        if self._new is not None:
            return self._new.array()
        dtype = np.result_type(self._old.dtype, np.min_scalar_type(self._new_scalar))
        return np.full(self.count, self._new_scalar, dtype=dtype)

    @property
    def new_scalar(self) -> int | None:
        """The single value every changed voxel got, or None when they differ."""
        return self._new_scalar

    @property
    def nbytes(self) -> int:
        return self._where.nbytes + self._old.nbytes + (self._new.nbytes if self._new is not None else 0) + 64

    def old_label_counts(self) -> dict[int, int]:
        """How many changed voxels each label value lost."""
        values, counts = np.unique(self.old_values(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def new_label_counts(self) -> dict[int, int]:
        if self._new_scalar is not None:
            return {self._new_scalar: self.count}
        values, counts = np.unique(self.new_values(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    # -- applying --------------------------------------------------------------------------
    def _write(self, labelmap: LabelMap, values: np.ndarray | int) -> None:
        top = int(np.max(values)) if np.ndim(values) else int(values)
        if top > 0:
            labelmap.ensure_capacity(top)
        region = labelmap.array[self.box.slices]
        if self._as_mask:
            region[self.mask()] = values
        else:
            coords = np.unravel_index(self._where.array().astype(np.int64), self.box.shape)
            region[coords] = values
        labelmap.notify(self.box)

    def restore_old(self, labelmap: LabelMap) -> None:
        self._write(labelmap, self.old_values())

    def restore_new(self, labelmap: LabelMap) -> None:
        self._write(labelmap, self._new_scalar if self._new_scalar is not None else self.new_values())


class Command(ABC):
    """One undoable step. ``apply`` (re)does it, ``revert`` undoes it."""

    description: str = ""

    @abstractmethod
    def apply(self) -> None: ...

    @abstractmethod
    def revert(self) -> None: ...

    @property
    def nbytes(self) -> int:
        return _COMMAND_OVERHEAD_BYTES

    def absorb(self, later: Command) -> bool:
        """Merge a directly following command into this one (e.g. colour-picker drags)."""
        return False


class CallbackCommand(Command):
    """A command made of two callables plus an optional voxel delta for memory accounting."""

    def __init__(
        self,
        description: str,
        apply: Callable[[], None],
        revert: Callable[[], None],
        nbytes: int = 0,
        merge_key: tuple | None = None,
    ):
        self.description = description
        self._apply = apply
        self._revert = revert
        self._nbytes = nbytes
        self.merge_key = merge_key

    def apply(self) -> None:
        self._apply()

    def revert(self) -> None:
        self._revert()

    @property
    def nbytes(self) -> int:
        return _COMMAND_OVERHEAD_BYTES + self._nbytes

    def absorb(self, later: Command) -> bool:
        """Two edits with the same merge key (same field of the same segment) become one step."""
        if self.merge_key is None or not isinstance(later, CallbackCommand) or later.merge_key != self.merge_key:
            return False
        self._apply = later._apply  # keep our revert (the oldest state), take its apply
        return True


class EditHistory:
    """Undo and redo stacks within a byte budget; the oldest commands are dropped first.

    The newest command is always kept, even when it alone exceeds the budget, so the edit
    the user just made can be undone. ``changed`` fires after every push/undo/redo/clear
    so a GUI can refresh its Undo/Redo actions (``undo_text`` / ``redo_text``).
    """

    def __init__(self, budget_bytes: int = MIN_BUDGET_BYTES * 16):
        self.budget_bytes = int(budget_bytes)
        self._undo: deque[Command] = deque()
        self._redo: list[Command] = []
        self._bytes = 0
        self.dropped = 0  # commands evicted by the budget since creation
        self.changed = Event("history_changed")

    # -- state -------------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].description if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].description if self._redo else ""

    @property
    def undo_count(self) -> int:
        return len(self._undo)

    @property
    def redo_count(self) -> int:
        return len(self._redo)

    @property
    def nbytes(self) -> int:
        """Bytes held by every stored command (undo and redo)."""
        return self._bytes

    # -- operations --------------------------------------------------------------------------
    def push(self, command: Command) -> None:
        """Record a command that has already been applied."""
        for dropped in self._redo:
            self._bytes -= dropped.nbytes
        self._redo.clear()
        if self._undo and self._undo[-1].absorb(command):
            self._recount()
        else:
            self._undo.append(command)
            self._bytes += command.nbytes
        self._enforce_budget()
        self.changed.emit()

    def undo(self) -> Command | None:
        if not self._undo:
            return None
        command = self._undo.pop()
        command.revert()
        self._redo.append(command)
        self.changed.emit()
        return command

    def redo(self) -> Command | None:
        if not self._redo:
            return None
        command = self._redo.pop()
        command.apply()
        self._undo.append(command)
        self.changed.emit()
        return command

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0
        self.changed.emit()

    def set_budget(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self._enforce_budget()
        self.changed.emit()

    def _recount(self) -> None:
        self._bytes = sum(c.nbytes for c in self._undo) + sum(c.nbytes for c in self._redo)

    def _enforce_budget(self) -> None:
        while self._bytes > self.budget_bytes and len(self._undo) > 1:
            oldest = self._undo.popleft()
            self._bytes -= oldest.nbytes
            self.dropped += 1
