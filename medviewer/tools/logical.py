"""Union, subtract and intersect a segment with another segment or any mask.

A label map gives each voxel one label, so two segments never overlap: "union" moves the
other segment's (unlocked) voxels into the target, while subtract and intersect matter
when the operand is a mask from elsewhere (a threshold, an imported or grown mask).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from medviewer.model.editing import EditRefused, LabelCommand, SegmentEditor
from medviewer.model.events import Box


class LogicalOperation(StrEnum):
    UNION = "union"
    SUBTRACT = "subtract"
    INTERSECT = "intersect"


def combine(operation: LogicalOperation | str, target: np.ndarray, operand: np.ndarray) -> np.ndarray:
    """The target mask after the operation (pure, for previews and tests)."""
    operation = LogicalOperation(operation)
    if operation == LogicalOperation.UNION:
        return target | operand
    if operation == LogicalOperation.SUBTRACT:
        return target & ~operand
    return target & operand


class LogicalTool:
    name = "logical"

    def __init__(self, editor: SegmentEditor):
        self.editor = editor

    def run(self, operation: LogicalOperation | str, operand: int | np.ndarray, label: int | None = None) -> LabelCommand | None:
        """Apply ``operation`` to segment ``label`` (default: active) with a segment label or a full-grid mask."""
        operation = LogicalOperation(operation)
        label = self.editor.policy.active_label if label is None else label
        if label is None:
            raise EditRefused("select a segment first")
        array = self.editor.labelmap.array
        if isinstance(operand, (int, np.integer)):
            if int(operand) not in self.editor.segments:
                raise EditRefused(f"there is no segment with label {operand}")
            operand_mask = array == int(operand)
            described = {"operand_label": int(operand), "operand_name": self.editor.segments[int(operand)].name}
        else:
            operand_mask = np.asarray(operand, dtype=bool)
            if operand_mask.shape != array.shape:
                raise ValueError(f"the operand mask {operand_mask.shape} does not cover the grid {array.shape}")
            described = {"operand": "mask", "operand_voxels": int(np.count_nonzero(operand_mask))}
        target = array == label
        result = combine(operation, target, operand_mask)
        box = Box.from_mask(target | result)
        if box is None:
            return None
        parameters = {"operation": str(operation), **described}
        return self.editor.replace_segment(result[box.slices], box, label, tool=f"logical {operation}", parameters=parameters)
