"""Accuracy of a model plugin against ground truth, with a simulated user (Qt-free).

The protocol follows the published interactive-segmentation evaluations (SAM-Med2D,
SAM-Med3D, RITM, the CVPR 2024 MedSAM-on-laptop challenge), so numbers are comparable:

* **First prompt**: the ground truth's bounding box (``box`` / ``box3d``), or one positive
  click at the object's deepest point, i.e. the maximum of the distance transform inside the
  object (``points`` / ``points3d``).
* **Each further click**: take the false-negative and false-positive regions of the current
  prediction, pick the largest connected error component and click at its deepest point
  (maximum of its distance transform); positive in a false negative, negative in a false
  positive. The box stays, clicks accumulate, and the previous low-resolution mask is fed back
  when the model accepts one (SAM's refinement loop). A perfect prediction stops clicking.
* **2D models on volumes** are evaluated slice by slice along ``axis`` (like SAM-Med2D, which
  evaluates 2D images): every slice where the label is present (``slices="all"``), only the
  slice where it is largest (``"largest"``), or given indices. Each slice gets its own prompts.
  With every labelled slice evaluated, the slice masks are stacked and scored in 3D; with a
  subset, Dice is pooled over those slices and NSD is their mean (no 3D surface exists).
  Mean per-slice 2D Dice and NSD are reported too.
* **3D prompts** go through :meth:`Engine.predict_3d` (3D models, e.g. SAM-Med3D, MedLSAM,
  region growing); a 3D box with a 2D-only model uses the engine's MedLSAM-style box
  segmentation (:func:`~medviewer.ai.propagation.start_box_segmentation`), one round only.

Metrics: Dice, and the normalised surface Dice (NSD, Nikolov et al. 2021): the fraction of
both border voxel sets lying within ``tolerance_mm`` of the other border, distances in
millimetres from the image spacing (counted per border voxel, not weighted by surfel area).

Everything runs in the caller's thread and waits on engine jobs, so the GUI, ``medviewer
segment`` and this evaluation share one code path. Spacing arguments of the metric and click
functions are in *array axis order* (``(z, y, x)`` for a volume, ``(rows, columns)`` for a slice).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from medviewer.ai.api import Prompt2D, Prompt3D, PromptKind, Window
from medviewer.ai.errors import UnsupportedPromptError
from medviewer.jobs import JobControl, ensure_control

PROMPT_MODES = ("box", "points", "box3d", "points3d")
SLICE_CHOICES = ("all", "largest")


# -- metrics ---------------------------------------------------------------------------------------
def _squeezed(masks: Sequence[np.ndarray], spacing: Sequence[float]) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """Drop length-1 axes (a 2D picture stored as one slice) so they do not count as borders."""
    shape = masks[0].shape
    if len(spacing) != len(shape):
        raise ValueError(f"spacing {tuple(spacing)} does not match a {len(shape)}D mask")
    for mask in masks:
        if mask.shape != shape:
            raise ValueError(f"mask shapes differ: {mask.shape} and {shape}")
    keep = [axis for axis, n in enumerate(shape) if n > 1] or [len(shape) - 1]
    new_shape = tuple(shape[a] for a in keep)
    return [np.asarray(m, dtype=bool).reshape(new_shape) for m in masks], tuple(float(spacing[a]) for a in keep)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); two empty masks agree perfectly (1.0)."""
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {prediction.shape} and {truth.shape}")
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def border(mask: np.ndarray) -> np.ndarray:
    """Object voxels with a face neighbour outside the object (the image edge counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))


def _distance_to(region: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Millimetres from every voxel to the nearest voxel of ``region`` (non-empty)."""
    return ndimage.distance_transform_edt(~region, sampling=spacing)


def normalized_surface_dice(
    prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 2.0
) -> float:
    """Share of both borders within ``tolerance_mm`` of the other border; spacing in array order.

    Both empty: 1.0; exactly one empty: 0.0.
    """
    if tolerance_mm < 0 or not math.isfinite(tolerance_mm):
        raise ValueError(f"the tolerance must be a finite number >= 0 mm, got {tolerance_mm}")
    (prediction, truth), spacing = _squeezed([prediction, truth], spacing)
    border_p, border_t = border(prediction), border(truth)
    count_p, count_t = int(border_p.sum()), int(border_t.sum())
    if count_p == 0 and count_t == 0:
        return 1.0
    if count_p == 0 or count_t == 0:
        return 0.0
    close_p = int((_distance_to(border_t, spacing)[border_p] <= tolerance_mm).sum())
    close_t = int((_distance_to(border_p, spacing)[border_t] <= tolerance_mm).sum())
    return (close_p + close_t) / (count_p + count_t)


# -- the simulated user ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Click:
    """A simulated click: array index (``(z, y, x)`` or ``(row, column)``) and its sign."""

    index: tuple[int, ...]
    positive: bool

    @property
    def xy(self) -> tuple[float, ...]:
        """The index as prompt coordinates (x = column first), as the plugin API wants them."""
        return tuple(float(v) for v in reversed(self.index))


def deepest_point(region: np.ndarray, spacing: Sequence[float]) -> tuple[int, ...]:
    """The voxel of ``region`` farthest (in mm) from its outside; the image edge counts as outside.

    Ties go to the first voxel in array order, so the simulation is deterministic.
    """
    region = np.asarray(region, dtype=bool)
    if not region.any():
        raise ValueError("the region is empty: there is nowhere to click")
    padded = np.pad(region, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=[float(s) for s in spacing])
    inner = distance[tuple(slice(1, -1) for _ in range(region.ndim))]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(inner)), region.shape))


def first_click(truth: np.ndarray, spacing: Sequence[float]) -> Click:
    """A positive click at the centre of the object (the maximum of its distance transform)."""
    return Click(deepest_point(truth, spacing), True)


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labelled, count = ndimage.label(mask)
    if count == 0:
        return mask, 0
    sizes = np.bincount(labelled.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    return labelled == biggest, int(sizes[biggest - 1])


def next_click(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> Click | None:
    """A click at the deepest point of the largest connected error; None when there is no error.

    Positive in a false-negative component, negative in a false-positive one; on equal sizes
    the missed region wins (adding what is missing first, as a user would).
    """
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    missed, size_missed = _largest_component(truth & ~prediction)
    extra, size_extra = _largest_component(prediction & ~truth)
    if size_missed == 0 and size_extra == 0:
        return None
    if size_missed >= size_extra:
        return Click(deepest_point(missed, spacing), True)
    return Click(deepest_point(extra, spacing), False)


def bounding_box(mask: np.ndarray) -> tuple[float, ...]:
    """Inclusive box of a mask in prompt order: (x0, y0, x1, y1) or (x0, y0, z0, x1, y1, z1)."""
    indices = np.nonzero(mask)
    if not indices[0].size:
        raise ValueError("the mask is empty")
    low = [int(i.min()) for i in indices][::-1]
    high = [int(i.max()) for i in indices][::-1]
    return tuple(float(v) for v in low + high)


# -- settings and results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationSettings:
    """How the simulated user prompts. ``rounds``: interactions per object (the first prompt
    counts as one); ``slices``: "all", "largest" or explicit slice indices along ``axis``."""

    prompt: str = "box"
    rounds: int = 1
    tolerance_mm: float = 2.0
    axis: int = 0
    slices: str | tuple[int, ...] = "all"
    window: Window | None = None

    def __post_init__(self):
        if self.prompt not in PROMPT_MODES:
            raise ValueError(f"prompt must be one of {', '.join(PROMPT_MODES)}, got {self.prompt!r}")
        if self.rounds < 1:
            raise ValueError(f"the number of clicks must be at least 1, got {self.rounds}")
        if self.tolerance_mm < 0 or not math.isfinite(self.tolerance_mm):
            raise ValueError(f"the NSD tolerance must be a finite number >= 0 mm, got {self.tolerance_mm}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis}")
        if isinstance(self.slices, str) and self.slices not in SLICE_CHOICES:
            raise ValueError(f"slices must be {' or '.join(SLICE_CHOICES)} or a list of indices, got {self.slices!r}")


@dataclass
class RoundResult:
    """Scores after one interaction round (round 1 = the first prompt)."""

    round: int
    prompt: str  # "box", "box3d", "+click", "-click", "none" (nothing left to correct)
    dice: float
    nsd: float
    slice_dice: float | None  # mean 2D Dice over the evaluated slices (2D protocol only)
    seconds: float  # engine round trips of this round, all slices together
    model_calls: int
    slice_nsd: float | None = None  # mean 2D NSD over the evaluated slices (2D protocol only)

    @property
    def seconds_per_call(self) -> float | None:
        return self.seconds / self.model_calls if self.model_calls else None

    def as_dict(self) -> dict:
        return {
            "round": self.round,
            "prompt": self.prompt,
            "dice": self.dice,
            "nsd": self.nsd,
            "slice_dice": self.slice_dice,
            "slice_nsd": self.slice_nsd,
            "seconds": self.seconds,
            "model_calls": self.model_calls,
            "seconds_per_call": self.seconds_per_call,
        }


@dataclass
class ObjectResult:
    """One label (or one binary mask) of one case, scored after every round."""

    label: int
    name: str
    protocol: str  # "2d-slices", "3d", "3d-box-propagation"
    slices: list[int]
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def final(self) -> RoundResult:
        return self.rounds[-1]

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "name": self.name,
            "protocol": self.protocol,
            "slices": self.slices,
            "rounds": [r.as_dict() for r in self.rounds],
        }


# -- the evaluation loop --------------------------------------------------------------------------
def _accepts_keyword(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _slice_key(axis: int, index: int) -> tuple:
    key: list[Any] = [slice(None)] * 3
    key[axis] = index
    return tuple(key)


def choose_slices(truth: np.ndarray, axis: int, choice: str | Sequence[int]) -> list[int]:
    """Slice indices along ``axis`` to evaluate (see :class:`EvaluationSettings`)."""
    other = tuple(a for a in range(3) if a != axis)
    areas = truth.sum(axis=other)
    present = [int(i) for i in np.flatnonzero(areas)]
    if choice == "all":
        return present
    if choice == "largest":
        return [int(np.argmax(areas))] if present else []
    chosen = sorted({int(i) for i in choice})
    outside = [i for i in chosen if not 0 <= i < truth.shape[axis]]
    if outside:
        raise ValueError(f"slices {outside} are outside 0..{truth.shape[axis] - 1}")
    return [i for i in chosen if areas[i] > 0]


def _only_slices(mask: np.ndarray, axis: int, slices: Sequence[int]) -> np.ndarray:
    """``mask`` with everything outside the given slices along ``axis`` cleared."""
    kept = np.zeros(mask.shape[axis], dtype=bool)
    kept[list(slices)] = True
    shape = [1, 1, 1]
    shape[axis] = mask.shape[axis]
    return mask & kept.reshape(shape)


def _spacing_zyx(volume: Any) -> tuple[float, float, float]:
    geometry = getattr(volume, "geometry", None)
    spacing = tuple(getattr(geometry, "spacing", (1.0, 1.0, 1.0)))
    return tuple(float(v) for v in reversed(spacing))  # type: ignore[return-value]


class Evaluator:
    """Runs the simulated user for one model on the engine; reuse it for many cases.

    The engine loads the model on first use; call ``engine.load_model`` beforehand so the
    loading time is not counted as the first click's.
    """

    def __init__(self, engine: Any, model_id: str, settings: EvaluationSettings):
        self.engine = engine
        self.model_id = model_id
        self.settings = settings
        self.info = engine.registry.get(model_id).info
        if self.info is None:
            raise UnsupportedPromptError(f"model {model_id!r} has no metadata")
        self.protocol = self._protocol()

    def _protocol(self) -> str:
        prompt, info = self.settings.prompt, self.info
        needed = {"box": PromptKind.BOX, "points": PromptKind.POINTS}
        if prompt in needed and info.is_2d:
            if not info.supports(needed[prompt]):
                raise UnsupportedPromptError(f"{info.name} does not accept {prompt} prompts")
            return "2d-slices"
        if prompt in ("box", "box3d") and info.is_3d and info.supports(PromptKind.BOX_3D):
            return "3d"
        if prompt in ("points", "points3d") and info.is_3d and info.supports(PromptKind.POINTS_3D):
            return "3d"
        if prompt == "box3d" and info.is_2d and info.supports(PromptKind.BOX):
            return "3d-box-propagation"
        raise UnsupportedPromptError(f"{info.name} cannot be evaluated with {prompt} prompts")

    @property
    def corrective_clicks(self) -> bool:
        """Whether rounds after the first can add clicks (a 3D box through a 2D model cannot)."""
        if self.protocol == "2d-slices":
            return self.info.supports(PromptKind.POINTS)
        if self.protocol == "3d":
            return self.info.supports(PromptKind.POINTS_3D)
        return False

    def evaluate(
        self,
        volume: Any,
        truth: np.ndarray,
        label: int = 1,
        name: str = "",
        control: JobControl | None = None,
    ) -> ObjectResult:
        """Score one object (``truth``: bool mask on the volume's grid) after every round."""
        control = ensure_control(control)
        truth = np.asarray(truth, dtype=bool)
        array = np.asarray(getattr(volume, "array", volume))
        if truth.shape != array.shape or truth.ndim != 3:
            raise ValueError(f"expected a 3D image and ground truth of one shape, got {array.shape} and {truth.shape}")
        if not truth.any():
            raise ValueError(f"label {label} is empty")
        if self.protocol == "2d-slices":
            return self._evaluate_slices(volume, truth, label, name, control)
        return self._evaluate_3d(volume, truth, label, name, control)

    # -- 2D models, slice by slice --------------------------------------------------------------------
    def _evaluate_slices(self, volume, truth, label, name, control) -> ObjectResult:
        settings = self.settings
        axis = settings.axis if truth.ndim == 3 and truth.shape[settings.axis] > 1 else 0
        slices = choose_slices(truth, axis, settings.slices)
        if not slices:
            raise ValueError(f"label {label} is on none of the chosen slices")
        spacing3d = _spacing_zyx(volume)
        spacing2d = tuple(s for a, s in enumerate(spacing3d) if a != axis)
        rounds = settings.rounds
        masks = [np.zeros(truth.shape, dtype=bool) for _ in range(rounds)]
        seconds, calls, kinds = [0.0] * rounds, [0] * rounds, [set() for _ in range(rounds)]
        slice_dice: list[list[float]] = [[] for _ in range(rounds)]
        slice_nsd: list[list[float]] = [[] for _ in range(rounds)]
        use_mask = self.info.supports(PromptKind.MASK)
        steps, done = len(slices) * rounds, 0
        for index in slices:
            key = _slice_key(axis, index)
            truth2d = truth[key]
            box = bounding_box(truth2d) if settings.prompt == "box" else None
            points: list[tuple[float, ...]] = []
            signs: list[int] = []
            previous = None
            mask2d = np.zeros(truth2d.shape, dtype=bool)
            for round_index in range(rounds):
                control.report(done, steps, f"label {label}, slice {index}, round {round_index + 1}")
                done += 1
                if round_index == 0:
                    if box is None:
                        click = first_click(truth2d, spacing2d)
                        points.append(click.xy)
                        signs.append(1)
                        kinds[0].add("+click")
                    else:
                        kinds[0].add("box")
                    click_made = True
                else:
                    click = next_click(mask2d, truth2d, spacing2d) if self.corrective_clicks else None
                    click_made = click is not None
                    if click is not None:
                        points.append(click.xy)
                        signs.append(int(click.positive))
                        kinds[round_index].add("+click" if click.positive else "-click")
                if click_made:
                    prompt = Prompt2D(box=box, points=tuple(points), labels=tuple(signs))
                    started = time.perf_counter()
                    prediction = self.engine.segment(
                        self.model_id, volume, axis, index, prompt, window=settings.window,
                        previous_low_res_mask=previous if use_mask else None,
                    ).get()
                    seconds[round_index] += time.perf_counter() - started
                    calls[round_index] += 1
                    mask2d = np.asarray(prediction.mask, dtype=bool).reshape(truth2d.shape)
                    previous = prediction.low_res_logits
                masks[round_index][key] = mask2d
                slice_dice[round_index].append(dice(mask2d, truth2d))
                slice_nsd[round_index].append(
                    normalized_surface_dice(mask2d, truth2d, spacing2d, settings.tolerance_mm)
                )
        control.report(steps, steps, f"label {label} done")
        # Every labelled slice prompted: score the stacked masks as a volume. A subset of slices
        # has no meaningful 3D surface, so then Dice is pooled over those slices and NSD is the
        # slices' mean (unprompted slices are not counted as misses).
        whole = slices == choose_slices(truth, axis, "all")
        evaluated = truth if whole else _only_slices(truth, axis, slices)
        result = ObjectResult(label, name or f"label {label}", self.protocol, slices)
        for round_index in range(rounds):
            mean_nsd = float(np.mean(slice_nsd[round_index]))
            nsd = mean_nsd
            if whole:
                nsd = normalized_surface_dice(masks[round_index], truth, spacing3d, settings.tolerance_mm)
            result.rounds.append(
                RoundResult(
                    round_index + 1,
                    "/".join(sorted(kinds[round_index])) or "none",
                    dice(masks[round_index], evaluated),
                    nsd,
                    float(np.mean(slice_dice[round_index])),
                    seconds[round_index],
                    calls[round_index],
                    mean_nsd,
                )
            )
        return result

    # -- 3D prompts -------------------------------------------------------------------------------
    def _evaluate_3d(self, volume, truth, label, name, control) -> ObjectResult:
        settings = self.settings
        spacing = _spacing_zyx(volume)
        rounds = settings.rounds if self.corrective_clicks else 1
        box = bounding_box(truth) if settings.prompt in ("box", "box3d") else None
        points: list[tuple[float, ...]] = []
        signs: list[int] = []
        result = ObjectResult(label, name or f"label {label}", self.protocol, [])
        options: dict[str, Any] = {}
        previous_result = None  # the last Prediction3D, for models that refine from it (SAM-Med3D)
        mask = np.zeros(truth.shape, dtype=bool)
        for round_index in range(rounds):
            control.report(round_index, rounds, f"label {label}, round {round_index + 1}")
            if round_index == 0:
                click = None if box is not None else first_click(truth, spacing)
                kind = "box3d" if box is not None else "+click"
            else:
                click = next_click(mask, truth, spacing)
                kind = "none" if click is None else ("+click" if click.positive else "-click")
            if click is not None:
                points.append(click.xy)
                signs.append(int(click.positive))
            seconds, calls = 0.0, 0
            if round_index == 0 or click is not None:
                prompt = Prompt3D(box=box, points=tuple(points), labels=tuple(signs))
                started = time.perf_counter()
                if self.protocol == "3d-box-propagation":
                    from medviewer.ai.propagation import start_box_segmentation

                    outcome = start_box_segmentation(
                        self.engine, self.model_id, volume, prompt, settings.axis, window=settings.window
                    ).get()
                else:
                    if previous_result is not None and self._accepts_previous():
                        options["previous"] = previous_result
                    outcome = self.engine.predict_3d(
                        self.model_id, volume, prompt, window=settings.window, **options
                    ).get()
                    previous_result = outcome
                seconds, calls = time.perf_counter() - started, 1
                mask = np.asarray(outcome.mask, dtype=bool).reshape(truth.shape)
            result.rounds.append(
                RoundResult(
                    round_index + 1,
                    kind,
                    dice(mask, truth),
                    normalized_surface_dice(mask, truth, spacing, settings.tolerance_mm),
                    None,
                    seconds,
                    calls,
                )
            )
        control.report(rounds, rounds, f"label {label} done")
        return result

    def _accepts_previous(self) -> bool:
        model = self.engine.loaded_model(self.model_id)
        return model is not None and _accepts_keyword(model.predict_3d, "previous")


def mean_by_round(objects: Sequence[ObjectResult]) -> list[dict]:
    """Mean Dice / NSD over objects after each round (objects with fewer rounds keep their last)."""
    if not objects:
        return []
    count = max(len(o.rounds) for o in objects)
    means = []
    for round_index in range(count):
        picked = [o.rounds[min(round_index, len(o.rounds) - 1)] for o in objects]
        timed = [r.seconds_per_call for r in picked if r.seconds_per_call is not None]
        means.append(
            {
                "round": round_index + 1,
                "dice": float(np.mean([r.dice for r in picked])),
                "nsd": float(np.mean([r.nsd for r in picked])),
                "seconds_per_call": float(np.mean(timed)) if timed else None,
                "objects": len(picked),
            }
        )
    return means


__all__ = [
    "PROMPT_MODES",
    "Click",
    "EvaluationSettings",
    "Evaluator",
    "ObjectResult",
    "RoundResult",
    "border",
    "bounding_box",
    "choose_slices",
    "deepest_point",
    "dice",
    "first_click",
    "mean_by_round",
    "next_click",
    "normalized_surface_dice",
]
