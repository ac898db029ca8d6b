"""The model plugin API: metadata, prompts, embeddings, predictions and the model base class.

Everything here is plain Python + numpy so discovery and the GUI can use these types without
importing torch. Coordinates are pixel (voxel) indices of the array the model is given:
``x`` is the column, ``y`` the row, ``z`` the slice (array order ``[z, y, x]``). They are not
physical millimetres: the caller maps clicks on a view to indices of the slice it shows.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medviewer.ai.errors import PluginError, UnsupportedPromptError
from medviewer.jobs import JobControl

Window = tuple[float, float]


class PromptKind(StrEnum):
    """What a user can give a model; a model lists the kinds it accepts in its metadata."""

    BOX = "box"
    POINTS = "points"  # positive (label 1) and negative (label 0) clicks
    MASK = "mask"  # a previous low-resolution mask fed back for refinement
    BOX_3D = "box_3d"
    POINTS_3D = "points_3d"


class Dimensionality(StrEnum):
    """Whether a model segments one slice at a time or a whole volume."""

    TWO_D = "2d"
    THREE_D = "3d"


@dataclass(frozen=True)
class CheckpointRule:
    """Where a model's weights come from, declared in its manifest so nothing is downloaded.

    ``kind`` is one of:
    - ``"none"``: the model needs no weights (classic algorithms);
    - ``"package_asset"``: a file shipped inside an installed package, ``location`` =
      ``"package:relative/path"``;
    - ``"file"``: a file next to the plugin, ``location`` relative to the plugin folder;
    - ``"user_file"``: the user must choose the file (``filename_hint`` says which).
    """

    kind: str = "none"
    location: str = ""
    sha256: str = ""
    filename_hint: str = ""

    KINDS: ClassVar[tuple[str, ...]] = ("none", "package_asset", "file", "user_file")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown checkpoint rule {self.kind!r}; expected one of {self.KINDS}")
        if self.kind in ("package_asset", "file") and not self.location:
            raise ValueError(f"a {self.kind!r} checkpoint rule needs a location")
        if self.kind == "package_asset" and ":" not in self.location:
            raise ValueError(f"package_asset must look like 'package:path/in/package', got {self.location!r}")

    @property
    def needs_checkpoint(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        if self.kind == "none":
            return "no checkpoint needed"
        if self.kind == "package_asset":
            return f"bundled with the installed package ({self.location})"
        if self.kind == "file":
            return f"file next to the plugin ({self.location})"
        hint = f" ({self.filename_hint})" if self.filename_hint else ""
        return f"choose the checkpoint file yourself{hint}"


@dataclass(frozen=True)
class ModelInfo:
    """Everything the app shows or checks about a model before importing its code."""

    id: str
    name: str
    version: str = ""
    license: str = ""
    citation: str = ""
    description: str = ""
    prompts: frozenset[PromptKind] = frozenset()
    recommended_prompts: tuple[PromptKind, ...] = ()
    dims: frozenset[Dimensionality] = frozenset({Dimensionality.TWO_D})
    input_size: tuple[int, ...] | None = None
    checkpoint: CheckpointRule = field(default_factory=CheckpointRule)
    notes: str = ""
    requires: tuple[str, ...] = ()
    #: ``decode`` only reads the model (no state of its own) and may run on the engine's
    #: decode lane while ``encode`` runs on the worker: a prompt on a cached slice is then
    #: answered at once instead of after a background encode.
    decode_while_encoding: bool = False

    @property
    def needs_checkpoint(self) -> bool:
        return self.checkpoint.needs_checkpoint

    def supports(self, kind: PromptKind | str) -> bool:
        return PromptKind(kind) in self.prompts

    @property
    def is_3d(self) -> bool:
        return Dimensionality.THREE_D in self.dims

    @property
    def is_2d(self) -> bool:
        return Dimensionality.TWO_D in self.dims


def _finite_tuple(values, length: int, what: str) -> tuple[float, ...]:
    items = tuple(float(v) for v in values)
    if len(items) != length:
        raise ValueError(f"{what} needs {length} numbers, got {len(items)}")
    if not all(math.isfinite(v) for v in items):
        raise ValueError(f"{what} contains non-finite values: {items}")
    return items


def _points_and_labels(points, labels, dims: int) -> tuple[tuple, tuple[int, ...]]:
    points = tuple(_finite_tuple(p, dims, "a point") for p in points)
    labels = tuple(int(label) for label in labels)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    if any(label not in (0, 1) for label in labels):
        raise ValueError(f"point labels must be 1 (positive) or 0 (negative), got {labels}")
    return points, labels


class _PromptParts:
    """What Prompt2D and Prompt3D share: which prompt kinds are present, and point filters."""

    _box_kind: PromptKind
    _points_kind: PromptKind

    @property
    def kinds(self) -> set[PromptKind]:
        kinds = set()
        if self.box is not None:
            kinds.add(self._box_kind)
        if self.points:
            kinds.add(self._points_kind)
        return kinds

    @property
    def is_empty(self) -> bool:
        return self.box is None and not self.points

    def points_with_label(self, label: int) -> list[tuple[float, ...]]:
        return [p for p, lab in zip(self.points, self.labels, strict=True) if lab == label]


@dataclass(frozen=True)
class Prompt2D(_PromptParts):
    """One object's prompt on one slice, in pixel indices of that slice (x = column, y = row).

    ``box`` is ``(x0, y0, x1, y1)``; a box drawn around a mask is (first column, first row,
    last column, last row), as SAM-family models were trained. Several objects are several
    prompts (one decode each), all reusing the slice's embedding.
    """

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    _box_kind: ClassVar[PromptKind] = PromptKind.BOX
    _points_kind: ClassVar[PromptKind] = PromptKind.POINTS

    def __post_init__(self):
        if self.box is not None:
            x0, y0, x1, y1 = _finite_tuple(self.box, 4, "a 2D box")
            object.__setattr__(self, "box", (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        points, labels = _points_and_labels(self.points, self.labels, 2)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)


@dataclass(frozen=True)
class Prompt3D(_PromptParts):
    """One object's prompt in a volume, in voxel indices (x, y, z) of the ``[z, y, x]`` array.

    ``box`` is ``(x0, y0, z0, x1, y1, z1)`` with inclusive last indices.
    """

    box: tuple[float, float, float, float, float, float] | None = None
    points: tuple[tuple[float, float, float], ...] = ()
    labels: tuple[int, ...] = ()
    _box_kind: ClassVar[PromptKind] = PromptKind.BOX_3D
    _points_kind: ClassVar[PromptKind] = PromptKind.POINTS_3D

    def __post_init__(self):
        if self.box is not None:
            b = _finite_tuple(self.box, 6, "a 3D box")
            lo = tuple(min(b[i], b[i + 3]) for i in range(3))
            hi = tuple(max(b[i], b[i + 3]) for i in range(3))
            object.__setattr__(self, "box", lo + hi)
        points, labels = _points_and_labels(self.points, self.labels, 3)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)


def _nbytes(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
        return int(value.element_size() * value.nelement())
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


@dataclass
class Embedding:
    """A slice's encoded image plus the preprocessing record needed to map prompts and masks.

    Encoding is the slow step (seconds on a CPU); decoding a prompt against a kept embedding
    takes milliseconds, which is why the engine caches these.
    """

    model_id: str
    features: Any  # model-owned: a torch tensor on the model's device, or a numpy array
    original_size: tuple[int, int]  # (rows, columns) of the slice as given
    resized_size: tuple[int, int]  # (rows, columns) after resizing, before padding
    input_size: tuple[int, int]  # (rows, columns) the network saw, padding included
    scale: float  # resized / original
    padding: tuple[int, int] = (0, 0)  # rows added at the bottom, columns added at the right
    window: Window | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.features) + _nbytes(self.extra)


@dataclass
class Prediction:
    """A 2D result at the slice's native size."""

    probabilities: np.ndarray  # float32 (rows, columns) in [0, 1]
    mask: np.ndarray  # bool (rows, columns)
    score: float | None = None  # the model's own quality estimate (predicted IoU) if it has one
    low_res_logits: np.ndarray | None = None  # feed back as ``previous_low_res_mask``


@dataclass
class Prediction3D:
    """A 3D result on the volume's grid, array order ``[z, y, x]``."""

    mask: np.ndarray  # bool
    probabilities: np.ndarray | None = None
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class SegmentationModel(ABC):
    """Base class every model plugin implements.

    Lifecycle: the registry instantiates the class with the manifest's :class:`ModelInfo`,
    the engine calls :meth:`load` once on its worker thread, then :meth:`encode` once per
    slice and :meth:`decode` per prompt, or :meth:`predict_3d` for 3D models. Methods take an
    optional :class:`~medviewer.jobs.JobControl`; long loops should call ``control.check()``
    so a user can cancel. Nothing may download files.
    """

    #: Metadata for classes registered without a manifest (entry points, tests).
    info: ClassVar[ModelInfo | None] = None

    def __init__(self, info: ModelInfo | None = None):
        info = info or type(self).info
        if info is None:
            raise PluginError(f"{type(self).__name__} has no ModelInfo (no manifest and no class attribute 'info')")
        self.info = info  # type: ignore[misc]  # the instance's copy may come from a manifest
        self.device = "cpu"
        self.checkpoint_path: Path | None = None
        self.loaded = False

    @abstractmethod
    def load(self, checkpoint: Path | None, device: str) -> None:
        """Load weights from ``checkpoint`` (None: the manifest's default) onto ``device``."""

    def unload(self) -> None:
        """Drop weights so memory can be reclaimed; override to release device buffers."""
        self.loaded = False

    def encode(
        self,
        image2d: np.ndarray,
        window: Window | None = None,
        *,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Embedding:
        """Encode one slice of raw intensities ``(rows, columns)``; ``window`` = (low, high)."""
        raise UnsupportedPromptError(f"{self.info.name} does not segment single slices")

    def decode(
        self,
        embedding: Embedding,
        prompt: Prompt2D,
        previous_low_res_mask: np.ndarray | None = None,
        *,
        control: JobControl | None = None,
    ) -> Prediction:
        """Turn a prompt into a mask at the slice's native size, reusing ``embedding``."""
        raise UnsupportedPromptError(f"{self.info.name} does not segment single slices")

    def predict_3d(
        self,
        volume: np.ndarray,
        prompt: Prompt3D,
        *,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        window: Window | None = None,
        modality: str = "",
        control: JobControl | None = None,
    ) -> Prediction3D:
        """Segment a whole ``[z, y, x]`` volume from a 3D prompt (3D models only).

        ``spacing`` is in ITK order (x, y, z), millimetres.
        """
        raise UnsupportedPromptError(f"{self.info.name} has no 3D mode")

    def check_prompt(self, prompt: Prompt2D | Prompt3D) -> None:
        """Refuse prompts the model cannot use, naming what it does accept."""
        if prompt.is_empty:
            raise UnsupportedPromptError("the prompt is empty: draw a box or click a point first")
        missing = sorted(kind.value for kind in prompt.kinds if kind not in self.info.prompts)
        if missing:
            accepted = ", ".join(sorted(k.value for k in self.info.prompts)) or "nothing"
            raise UnsupportedPromptError(
                f"{self.info.name} does not accept {', '.join(missing)} prompts (it accepts: {accepted})"
            )

    def __repr__(self) -> str:
        state = f"loaded on {self.device}" if self.loaded else "not loaded"
        return f"<{type(self).__name__} {self.info.id!r} {state}>"
