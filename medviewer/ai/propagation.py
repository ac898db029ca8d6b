"""Slice-by-slice 3D segmentation with any 2D model (Qt-free).

Two ways to get a 3D mask out of a box-prompted 2D model such as LiteMedSAM:

* **Propagation from an accepted 2D mask** (like micro-sam's ``segment_mask_in_volume``): the
  user accepts a mask on slice ``k``; slice ``k +- 1`` is prompted with that mask's bounding box
  grown by ``margin_mm``, and so on outwards, each slice prompted from its neighbour's result.
  A direction stops when the mask vanishes, when its intensities no longer match the seed's
  (box models fill any box with *something*, so past the end of a structure the mask keeps
  its shape but not its contents), when it stops overlapping its neighbour or its area jumps
  (the model switched object or leaked), when the model's own score is too low, at
  ``max_slices`` or at the end of the volume.
* **3D box** (MedLSAM's "localise, then segment every slice in the box"): a 3D box (two corner
  clicks in the MPR views, a MedLAM localisation) or two 2D boxes on a first and a last slice
  (in-plane rectangles interpolated between them) gives each slice of the range an allowed
  rectangle. The middle slice is prompted with its rectangle grown by the margin; the others
  with the neighbour's mask box (+ margin) clipped to their rectangle (+ margin,
  ``box_source="propagate"``), or simply with their grown rectangle (``"fixed"``, MedLSAM's
  per-slice box with padding). Masks are clipped to the grown rectangle. A direction stops at
  the end of the range or when the structure ends (empty mask, or a change of intensity).

Both work along array axis 0, 1 or 2 (the 2D slice orientations of
:func:`medviewer.ai.engine.take_slice`) and report progress per slice.

**Which 2D model**: a :class:`SliceSegmenter` wraps it. :class:`EngineSliceSegmenter` goes
through the :class:`~medviewer.ai.engine.Engine` (embeddings cached and shared with the
interactive tools; it must run *inside* an engine job, see :func:`start_propagation` and
:func:`start_box_segmentation`), :class:`ModelSliceSegmenter` drives a loaded
:class:`~medviewer.ai.api.SegmentationModel` directly with its own or a shared
:class:`~medviewer.ai.cache.EmbeddingCache` (scripts, tests, plugins such as MedLSAM).

**Stopping and cancelling** (decided here): ``control.cancel()`` (the job's Cancel) discards
everything: the job ends CANCELLED and there is no result, so a half-finished propagation is
never written into a label map by accident. ``stop`` (a :class:`threading.Event`, the GUI's
"Stop here") ends the walk after the current slice and returns the slices finished so far as a
normal result with ``stopped_early=True``. ``on_slice(index, mask2d, score)`` is called after
every accepted slice (on the worker thread) for a live preview.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medviewer.ai.api import Prediction, Prediction3D, Prompt2D, Prompt3D, PromptKind, SegmentationModel, Window
from medviewer.ai.cache import EmbeddingCache, EmbeddingKey, normalise_window, volume_fingerprint
from medviewer.ai.errors import ModelError, UnsupportedPromptError
from medviewer.jobs import JobControl, ensure_control

Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1): first/last column, first/last row (inclusive)
SliceCallback = Callable[[int, np.ndarray, "float | None"], None]

UP, DOWN = +1, -1
_DIRECTION_NAMES = {UP: "up", DOWN: "down"}


# -- settings and result ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PropagationSettings:
    """How slices are prompted and when a direction stops. Defaults: measured with LiteMedSAM
    on the demo phantom (see tests/test_ai_propagation.py)."""

    margin_mm: float = 7.0  # the neighbour's mask box is grown by this much on every side
    min_area_px: int = 8  # fewer pixels: the structure has ended
    # Overlap with the neighbour's mask, |A & B| / min(|A|, |B|), below this: stop. micro-sam
    # uses IoU; on CT's thick slices a structure's last slices shrink fast and their IoU with
    # the neighbour is legitimately small, while a shrinking mask still overlaps fully.
    min_overlap: float = 0.5
    min_area_ratio: float = 0.0  # area / neighbour's area below this (sudden collapse): stop
    max_area_ratio: float = 3.0  # above this (a leak into the surroundings): stop
    min_score: float | None = None  # the model's own quality estimate below this: stop
    # Mean intensity inside the new mask differs from the seed mask's by more than this many of
    # the seed's standard deviations: stop. Box models fill any box with *something*, so on a
    # slice past the end of the structure the mask keeps its shape but not its contents.
    max_intensity_shift: float | None = 1.0
    max_slices: int | None = None  # per direction, not counting the start slice
    largest_component: bool = True  # keep only the largest connected part of each slice's mask
    use_points: bool = False  # add a positive click at the neighbour mask's centroid (if supported)
    box_source: str = "propagate"  # box mode: "propagate" (neighbour's mask box) or "fixed" (the rectangle)
    clip_to_box: bool = True  # box mode: nothing outside the slice's rectangle (+ margin)

    BOX_SOURCES = ("propagate", "fixed")

    def __post_init__(self):
        if self.box_source not in self.BOX_SOURCES:
            raise ValueError(f"box_source must be one of {self.BOX_SOURCES}, got {self.box_source!r}")
        if self.margin_mm < 0:
            raise ValueError("margin_mm must not be negative")

    @classmethod
    def for_box(cls, **changes) -> PropagationSettings:
        """Box-mode defaults: the user drew the extent, so only an empty mask or a change of
        intensity ends a direction early (no overlap / area checks)."""
        base = cls(min_overlap=0.0, min_area_ratio=0.0, max_area_ratio=math.inf)
        return replace(base, **changes)


@dataclass
class PropagationResult:
    """A 3D mask on the volume grid built slice by slice, with what happened on each slice."""

    mask: np.ndarray  # bool, the volume's [z, y, x] shape
    axis: int
    start: int
    scores: dict[int, float | None] = field(default_factory=dict)  # slice -> model's own score
    areas: dict[int, int] = field(default_factory=dict)  # slice -> pixels in its mask
    stop_reasons: dict[str, str] = field(default_factory=dict)  # "up" / "down" -> why it stopped
    stopped_early: bool = False  # the user's stop event ended it; the slices so far are kept

    @property
    def slices(self) -> list[int]:
        return sorted(self.areas)

    @property
    def slice_range(self) -> tuple[int, int] | None:
        return (min(self.areas), max(self.areas)) if self.areas else None

    @property
    def mean_score(self) -> float | None:
        values = [s for s in self.scores.values() if s is not None]
        return float(np.mean(values)) if values else None

    def to_prediction3d(self) -> Prediction3D:
        return Prediction3D(
            mask=self.mask,
            probabilities=None,
            score=self.mean_score,
            details={
                "axis": self.axis,
                "start": self.start,
                "slice_scores": dict(self.scores),
                "slice_areas": dict(self.areas),
                "stop_reasons": dict(self.stop_reasons),
                "stopped_early": self.stopped_early,
            },
        )


# -- slice geometry -----------------------------------------------------------------------------------
def in_plane_axes(axis: int) -> tuple[int, int]:
    """Array axes of a slice's (rows, columns): axis 0 -> (1, 2), 1 -> (0, 2), 2 -> (0, 1)."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return tuple(a for a in (0, 1, 2) if a != axis)  # type: ignore[return-value]


def in_plane_spacing(axis: int, spacing_xyz) -> tuple[float, float]:
    """(row, column) pixel size in mm of slices across ``axis``; spacing is ITK (x, y, z)."""
    rows, columns = in_plane_axes(axis)
    return float(spacing_xyz[2 - rows]), float(spacing_xyz[2 - columns])


def _slicer(axis: int, index: int) -> tuple:
    key: list[Any] = [slice(None)] * 3
    key[axis] = index
    return tuple(key)


def mask_rect(mask: np.ndarray) -> Rect | None:
    """Bounding box (x0, y0, x1, y1) of a 2D mask, inclusive, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    return (float(columns[0]), float(rows[0]), float(columns[-1]), float(rows[-1]))


def grow_rect(rect: Rect, margin_rows: float, margin_columns: float, shape: tuple[int, int]) -> Rect:
    x0, y0, x1, y1 = rect
    return (
        max(0.0, x0 - margin_columns),
        max(0.0, y0 - margin_rows),
        min(float(shape[1] - 1), x1 + margin_columns),
        min(float(shape[0] - 1), y1 + margin_rows),
    )


def intersect_rect(a: Rect, b: Rect) -> Rect | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


def rects_for_box3d(box, axis: int, shape: tuple[int, int, int] | None = None) -> dict[int, Rect]:
    """A 3D box (x0, y0, z0, x1, y1, z1) in voxel indices (inclusive; a :class:`Prompt3D` box)
    -> the same in-plane rectangle for every slice across ``axis`` it spans."""
    if isinstance(box, Prompt3D):
        if box.box is None:
            raise UnsupportedPromptError("the prompt has no 3D box")
        box = box.box
    x0, y0, z0, x1, y1, z1 = (float(v) for v in box)
    low = {0: z0, 1: y0, 2: x0}  # per array axis
    high = {0: z1, 1: y1, 2: x1}
    rows, columns = in_plane_axes(axis)
    rect = (low[columns], low[rows], high[columns], high[rows])
    first, last = int(math.ceil(min(low[axis], high[axis]) - 1e-6)), int(math.floor(max(low[axis], high[axis]) + 1e-6))
    if shape is not None:
        first, last = max(first, 0), min(last, shape[axis] - 1)
    if last < first:
        raise UnsupportedPromptError("the 3D box spans no slice of the volume")
    return {index: rect for index in range(first, last + 1)}


def rects_between(index_a: int, rect_a: Rect, index_b: int, rect_b: Rect) -> dict[int, Rect]:
    """Boxes drawn on two slices (e.g. the first and the last slice of a structure) -> a
    rectangle for every slice between them, interpolated linearly corner by corner."""
    if index_b < index_a:
        index_a, rect_a, index_b, rect_b = index_b, rect_b, index_a, rect_a
    rects: dict[int, Rect] = {}
    for index in range(int(index_a), int(index_b) + 1):
        t = 0.0 if index_b == index_a else (index - index_a) / (index_b - index_a)
        x0, y0, x1, y1 = (float(a + t * (b - a)) for a, b in zip(rect_a, rect_b, strict=True))
        rects[index] = (x0, y0, x1, y1)
    return rects


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    smaller = min(int(a.sum()), int(b.sum()))
    return float(np.logical_and(a, b).sum() / smaller) if smaller else 0.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _clip_to_rect(mask: np.ndarray, rect: Rect) -> np.ndarray:
    x0, y0, x1, y1 = rect
    keep = np.zeros_like(mask, dtype=bool)
    keep[int(math.floor(y0)) : int(math.floor(y1)) + 1, int(math.floor(x0)) : int(math.floor(x1)) + 1] = True
    return mask & keep


# -- 2D model adapters --------------------------------------------------------------------------------
def _array_of(volume: Any) -> np.ndarray:
    return np.asarray(volume.array if hasattr(volume, "array") else volume)


def _spacing_of(volume: Any, spacing=None) -> tuple[float, float, float]:
    if spacing is not None:
        return tuple(float(v) for v in spacing)  # type: ignore[return-value]
    geometry = getattr(volume, "geometry", None)
    return tuple(float(v) for v in getattr(geometry, "spacing", (1.0, 1.0, 1.0)))  # type: ignore[return-value]


class SliceSegmenter:
    """Segments 2D slices of one volume across one array axis with one 2D model."""

    def __init__(self, volume: Any, axis: int = 0, spacing=None, supports_points: bool = False):
        self.volume = volume
        self.array = _array_of(volume)
        if self.array.ndim != 3:
            raise ValueError(f"propagation needs a 3D volume, got shape {self.array.shape}")
        in_plane_axes(axis)
        self.axis = int(axis)
        self.spacing = _spacing_of(volume, spacing)
        self.supports_points = supports_points

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def slice_count(self) -> int:
        return int(self.array.shape[self.axis])

    @property
    def slice_shape(self) -> tuple[int, int]:
        rows, columns = in_plane_axes(self.axis)
        return int(self.array.shape[rows]), int(self.array.shape[columns])

    def segment(self, index: int, prompt: Prompt2D, control: JobControl) -> Prediction:
        raise NotImplementedError


class ModelSliceSegmenter(SliceSegmenter):
    """A loaded 2D :class:`SegmentationModel` driven directly, embeddings kept in ``cache``.

    ``window=None`` uses the same rule as the engine (CT: level 40 / width 400, otherwise the
    volume's percentiles), computed once for the whole volume so every slice is windowed alike.
    """

    def __init__(
        self,
        model: SegmentationModel,
        volume: Any,
        axis: int = 0,
        *,
        window: Window | None = None,
        spacing=None,
        modality: str | None = None,
        cache: EmbeddingCache | None = None,
    ):
        super().__init__(volume, axis, spacing, supports_points=model.info.supports(PromptKind.POINTS))
        if not model.info.is_2d:
            raise UnsupportedPromptError(f"{model.info.name} does not segment single slices")
        from medviewer.ai.preprocessing import default_window

        self.model = model
        info = getattr(volume, "info", None)
        self.modality = modality if modality is not None else str(getattr(info, "modality", "") or "")
        self.window = normalise_window(window if window is not None else default_window(self.array, self.modality))
        self.cache = cache if cache is not None else EmbeddingCache()
        self._fingerprint = volume_fingerprint(volume)
        self._sha = self._checkpoint_sha()
        self.encodes = 0

    def _checkpoint_sha(self) -> str:
        path = getattr(self.model, "checkpoint_path", None)
        if path is None:
            return ""
        from medviewer.ai.checkpoints import file_sha256

        try:
            return file_sha256(path)
        except ModelError:
            return str(path)

    def embedding(self, index: int, control: JobControl):
        key = EmbeddingKey(self._fingerprint, self.axis, int(index), self.window, self.model.info.id, self._sha)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        image = np.ascontiguousarray(np.take(self.array, int(index), axis=self.axis))
        embedding = self.model.encode(image, self.window, modality=self.modality, control=control)
        self.encodes += 1
        self.cache.put(key, embedding)
        return embedding

    def segment(self, index: int, prompt: Prompt2D, control: JobControl) -> Prediction:
        self.model.check_prompt(prompt)
        embedding = self.embedding(index, control)
        control.check()
        return self.model.decode(embedding, prompt, None, control=control)


class EngineSliceSegmenter(SliceSegmenter):
    """A 2D model behind the :class:`~medviewer.ai.engine.Engine`: the same encode/decode path,
    cache and loaded model as interactive segmentation.

    Use it only inside a job running on the engine's worker (``engine.submit``); the
    ``start_*`` functions below do that. (A job cannot wait for other jobs: there is one worker.)
    """

    def __init__(self, engine: Any, model_id: str, volume: Any, axis: int = 0, window: Window | None = None):
        entry = engine.registry.get(model_id)
        info = entry.info
        if info is not None and not info.is_2d:
            raise UnsupportedPromptError(f"{info.name} does not segment single slices")
        super().__init__(volume, axis, supports_points=bool(info and info.supports(PromptKind.POINTS)))
        self.engine = engine
        self.model_id = model_id
        self.window = window

    def segment(self, index: int, prompt: Prompt2D, control: JobControl) -> Prediction:
        engine = self.engine
        request = engine._request(self.model_id, self.volume, self.axis, int(index), self.window)
        embedding = engine._embedding_for(request, control)
        return engine._decode_now(self.model_id, embedding, prompt, None, control)


# -- the walk -------------------------------------------------------------------------------------------
class _Walk:
    """Shared state of one propagation: the output, progress and the stop/cancel checks."""

    def __init__(self, segmenter: SliceSegmenter, settings: PropagationSettings, control, stop, on_slice, total: int):
        self.segmenter = segmenter
        self.settings = settings
        self.control = ensure_control(control)
        self.stop = stop
        self.on_slice = on_slice
        self.total = max(1, total)
        self.done = 0
        rows_mm, columns_mm = in_plane_spacing(segmenter.axis, segmenter.spacing)
        self.margin = (settings.margin_mm / rows_mm, settings.margin_mm / columns_mm)
        self.result: PropagationResult | None = None
        self.reference: tuple[float, float] | None = None  # mean, std of the seed mask's intensities

    def image(self, index: int) -> np.ndarray:
        return np.take(self.segmenter.array, int(index), axis=self.segmenter.axis)

    def set_reference(self, index: int, mask: np.ndarray) -> None:
        values = self.image(index)[mask].astype(np.float64)
        if values.size:
            mean, std = float(values.mean()), float(values.std())
            self.reference = (mean, max(std, 1e-3 * (abs(mean) + 1.0)))

    def begin(self, start: int) -> PropagationResult:
        self.result = PropagationResult(np.zeros(self.segmenter.shape, dtype=bool), self.segmenter.axis, int(start))
        return self.result

    def progress(self, index: int) -> None:
        self.control.report(min(self.done, self.total), self.total, f"slice {index}")  # also a cancellation point

    def predict(
        self, index: int, rect: Rect, previous: np.ndarray | None, allowed: Rect | None
    ) -> tuple[np.ndarray, float | None]:
        points: tuple = ()
        labels: tuple = ()
        if self.settings.use_points and self.segmenter.supports_points and previous is not None and previous.any():
            rows, columns = np.nonzero(previous)
            centre = (float(columns.mean()), float(rows.mean()))
            if previous[int(round(centre[1])), int(round(centre[0]))]:
                points, labels = (centre,), (1,)
        prediction = self.segmenter.segment(index, Prompt2D(box=rect, points=points, labels=labels), self.control)
        mask = np.asarray(prediction.mask, dtype=bool)
        if allowed is not None and self.settings.clip_to_box:
            mask = _clip_to_rect(mask, grow_rect(allowed, *self.margin, mask.shape))
        if self.settings.largest_component and mask.any():
            mask = _largest_component(mask)
        self.done += 1
        return mask, prediction.score

    def accept(self, index: int, mask: np.ndarray, score: float | None) -> None:
        result = self.result
        assert result is not None
        result.mask[_slicer(self.segmenter.axis, index)] = mask
        result.scores[index] = score
        result.areas[index] = int(mask.sum())
        if self.on_slice is not None:
            self.on_slice(index, mask, score)

    def reject_reason(
        self, mask: np.ndarray, score: float | None, previous: np.ndarray | None, index: int
    ) -> str | None:
        s = self.settings
        area = int(mask.sum())
        if area < s.min_area_px:
            return f"the structure ended at slice {index} (empty mask)"
        if s.min_score is not None and score is not None and score < s.min_score:
            return f"model score {score:.2f} < {s.min_score} at slice {index}"
        if s.max_intensity_shift is not None and self.reference is not None:
            mean, std = self.reference
            shift = abs(float(self.image(index)[mask].astype(np.float64).mean()) - mean) / std
            if shift > s.max_intensity_shift:
                return f"intensity inside the mask moved {shift:.1f} SD from the seed's at slice {index}"
        if previous is not None and previous.any():
            before = int(previous.sum())
            if s.min_overlap > 0:
                overlap = _overlap(previous, mask)
                if overlap < s.min_overlap:
                    return f"overlap {overlap:.2f} with the neighbour < {s.min_overlap} at slice {index}"
            ratio = area / before
            if ratio < s.min_area_ratio:
                return f"area fell to {ratio:.2f} of the neighbour's at slice {index}"
            if ratio > s.max_area_ratio:
                return f"area grew to {ratio:.2f} times the neighbour's at slice {index} (leak?)"
        return None

    def walk(
        self,
        start: int,
        start_mask: np.ndarray,
        direction: int,
        limit: int,
        rect_for: Callable[[int], Rect | None] | None = None,
    ) -> None:
        """From ``start`` (already accepted) towards ``limit`` (inclusive) in ``direction``."""
        result = self.result
        assert result is not None
        name = _DIRECTION_NAMES[direction]
        shape = self.segmenter.slice_shape
        previous = start_mask
        index = start + direction
        steps = 0
        while True:
            if (direction > 0 and index > limit) or (direction < 0 and index < limit):
                at_volume_end = index < 0 or index >= self.segmenter.slice_count
                result.stop_reasons[name] = (
                    "reached the end of the volume" if at_volume_end else "reached the end of the box"
                )
                return
            if self.settings.max_slices is not None and steps >= self.settings.max_slices:
                result.stop_reasons[name] = f"max_slices ({self.settings.max_slices}) reached"
                return
            if self.stop is not None and self.stop.is_set():
                result.stop_reasons[name] = "stopped by the user"
                result.stopped_early = True
                return
            self.progress(index)
            allowed = rect_for(index) if rect_for is not None else None
            neighbour = mask_rect(previous)
            if allowed is not None and (self.settings.box_source == "fixed" or neighbour is None):
                rect = grow_rect(allowed, *self.margin, shape)
            elif neighbour is None:
                result.stop_reasons[name] = f"the structure ended at slice {index - direction}"
                return
            else:
                rect = grow_rect(neighbour, *self.margin, shape)
                if allowed is not None:
                    rect = intersect_rect(rect, grow_rect(allowed, *self.margin, shape)) or allowed
            mask, score = self.predict(index, rect, previous, allowed)
            reason = self.reject_reason(mask, score, previous, index)
            if reason is not None:
                result.stop_reasons[name] = reason
                return
            self.accept(index, mask, score)
            previous = mask
            index += direction
            steps += 1


# -- public entry points -------------------------------------------------------------------------------
def propagate_from_mask(
    segmenter: SliceSegmenter,
    index: int,
    seed_mask: np.ndarray,
    settings: PropagationSettings | None = None,
    *,
    directions: tuple[int, ...] = (UP, DOWN),
    control: JobControl | None = None,
    stop: threading.Event | None = None,
    on_slice: SliceCallback | None = None,
) -> PropagationResult:
    """Spread an accepted 2D mask on slice ``index`` to its neighbours along the segmenter's axis.

    The seed slice is part of the result as given. ``directions``: (+1, -1) both ways, (+1,)
    towards higher indices only, (-1,) lower.
    """
    settings = settings or PropagationSettings()
    seed = np.asarray(seed_mask, dtype=bool)
    if seed.shape != segmenter.slice_shape:
        raise ValueError(
            f"the seed mask is {seed.shape}, slices across axis {segmenter.axis} are {segmenter.slice_shape}"
        )
    if not 0 <= index < segmenter.slice_count:
        raise ValueError(f"slice {index} is outside 0..{segmenter.slice_count - 1}")
    if not seed.any():
        raise UnsupportedPromptError("the seed mask is empty: accept a mask on the slice first")
    walk = _Walk(segmenter, settings, control, stop, on_slice, segmenter.slice_count - 1)
    walk.begin(index)
    walk.set_reference(index, seed)
    walk.accept(index, seed, None)
    for direction in directions:
        limit = segmenter.slice_count - 1 if direction > 0 else 0
        walk.walk(index, seed, direction, limit)
    walk.control.report(walk.total, walk.total, "done")
    assert walk.result is not None
    return walk.result


def segment_box(
    segmenter: SliceSegmenter,
    slice_rects: Mapping[int, Rect],
    settings: PropagationSettings | None = None,
    *,
    start: int | None = None,
    control: JobControl | None = None,
    stop: threading.Event | None = None,
    on_slice: SliceCallback | None = None,
) -> PropagationResult:
    """Segment every slice that has a rectangle in ``slice_rects`` (see :func:`rects_for_box3d`
    and :func:`rects_between`), starting at ``start`` (default: the middle slice) and walking
    out to both ends of the range."""
    settings = settings or PropagationSettings.for_box()
    rects = {int(i): tuple(float(v) for v in r) for i, r in slice_rects.items() if 0 <= int(i) < segmenter.slice_count}
    if not rects:
        raise UnsupportedPromptError("the box covers no slice of the volume")
    first, last = min(rects), max(rects)
    missing = [i for i in range(first, last + 1) if i not in rects]
    if missing:
        raise ValueError(f"slice_rects must cover a contiguous range; slices {missing[:5]} have none")
    if start is None:
        start = (first + last) // 2
    if start not in rects:
        raise ValueError(f"the start slice {start} is outside the box's slices {first}..{last}")
    walk = _Walk(segmenter, settings, control, stop, on_slice, last - first + 1)
    result = walk.begin(start)
    walk.progress(start)
    start_rect = rects[start]  # type: ignore[index]
    prompt_rect = grow_rect(start_rect, *walk.margin, segmenter.slice_shape)  # type: ignore[arg-type]
    mask, score = walk.predict(start, prompt_rect, None, start_rect)  # type: ignore[arg-type]
    if int(mask.sum()) < settings.min_area_px:
        result.stop_reasons = {
            "up": f"nothing found on the start slice {start}",
            "down": f"nothing found on the start slice {start}",
        }
        return result
    walk.set_reference(start, mask)
    walk.accept(start, mask, score)
    walk.walk(start, mask, UP, last, rects.get)  # type: ignore[arg-type]
    walk.walk(start, mask, DOWN, first, rects.get)  # type: ignore[arg-type]
    walk.control.report(walk.total, walk.total, "done")
    return result


# -- through the engine ---------------------------------------------------------------------------------
def start_propagation(
    engine: Any,
    model_id: str,
    volume: Any,
    axis: int,
    index: int,
    seed_mask: np.ndarray,
    settings: PropagationSettings | None = None,
    *,
    window: Window | None = None,
    directions: tuple[int, ...] = (UP, DOWN),
    stop: threading.Event | None = None,
    on_slice: SliceCallback | None = None,
) -> Any:
    """Queue :func:`propagate_from_mask` on the engine's worker; returns the
    :class:`~medviewer.ai.engine.Job` whose result is a :class:`PropagationResult`."""
    from medviewer.ai.engine import Priority

    segmenter = EngineSliceSegmenter(engine, model_id, volume, axis, window)  # validates in the caller's thread
    seed = np.array(seed_mask, dtype=bool, copy=True)

    def run(control: JobControl) -> PropagationResult:
        return propagate_from_mask(
            segmenter, index, seed, settings, directions=directions, control=control, stop=stop, on_slice=on_slice
        )

    return engine.submit(
        run, "propagate", f"propagating slice {index} (axis {axis}) with {model_id}", Priority.FOREGROUND
    )


def start_box_segmentation(
    engine: Any,
    model_id: str,
    volume: Any,
    box: Any,
    axis: int = 0,
    settings: PropagationSettings | None = None,
    *,
    window: Window | None = None,
    start: int | None = None,
    stop: threading.Event | None = None,
    on_slice: SliceCallback | None = None,
) -> Any:
    """Queue :func:`segment_box` on the engine's worker. ``box``: a :class:`Prompt3D` with a
    box, a 3D box tuple (x0, y0, z0, x1, y1, z1) in voxel indices, or a ``{slice: rect}``
    mapping (e.g. from :func:`rects_between`). Result: a :class:`PropagationResult`."""
    from medviewer.ai.engine import Priority

    segmenter = EngineSliceSegmenter(engine, model_id, volume, axis, window)
    rects = dict(box) if isinstance(box, Mapping) else rects_for_box3d(box, axis, segmenter.shape)

    def run(control: JobControl) -> PropagationResult:
        return segment_box(segmenter, rects, settings, start=start, control=control, stop=stop, on_slice=on_slice)

    return engine.submit(run, "box_3d", f"segmenting a 3D box (axis {axis}) with {model_id}", Priority.FOREGROUND)


__all__ = [
    "DOWN",
    "UP",
    "EngineSliceSegmenter",
    "ModelSliceSegmenter",
    "PropagationResult",
    "PropagationSettings",
    "SliceSegmenter",
    "in_plane_axes",
    "in_plane_spacing",
    "mask_rect",
    "propagate_from_mask",
    "rects_between",
    "rects_for_box3d",
    "segment_box",
    "start_box_segmentation",
    "start_propagation",
]
