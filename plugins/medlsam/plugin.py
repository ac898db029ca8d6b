"""MedLSAM-style "localise, then segment" as a medviewer 3D model.

* **Segment** (always available, no weights of its own): a 3D box is cut into slices across
  ``axis`` and every slice in range is segmented by a 2D box model (LiteMedSAM by default, any
  2D plugin by id), each slice prompted with its neighbour's mask box + margin inside the 3D
  box, stopping where the structure ends (:func:`medviewer.ai.propagation.segment_box`).
* **Localise** (with the user's ``medlam.pth``): support annotations (a box or mask of the
  structure on one or more reference CT scans, :meth:`MedLSAM.add_support`) turn into a 3D box
  on a new scan (:meth:`MedLSAM.localize`), which is then segmented as above.

Prompts to :meth:`MedLSAM.predict_3d` are in the volume's voxel indices (x, y, z) like every
:class:`~medviewer.ai.api.Prompt3D`:

* a box ``(x0, y0, z0, x1, y1, z1)`` (inclusive), e.g. from two corner clicks in the MPR views;
* two or more positive points marking the structure's extent (their bounding box is used);
* an empty prompt (or ``support="name"``) when support annotations were added: the box comes
  from MedLAM.

Through the engine: ``engine.predict_3d("medlsam", volume, Prompt3D(box=...), axis=0)`` (keyword
options reach :meth:`predict_3d`); ``engine.load_model("medlsam", checkpoint="medlam.pth")``
loads the localiser. The 2D model inside this plugin has its own embedding cache; a GUI that
wants to share the interactive tools' cache calls
:func:`medviewer.ai.propagation.start_box_segmentation` directly and uses this plugin only to
localise.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.ai.api import Prediction3D, Prompt3D, SegmentationModel, Window
from medviewer.ai.cache import EmbeddingCache
from medviewer.ai.checkpoints import load_state_dict, load_weights_strict
from medviewer.ai.errors import ModelError, UnsupportedPromptError
from medviewer.ai.propagation import (
    ModelSliceSegmenter,
    PropagationSettings,
    SliceCallback,
    rects_for_box3d,
    segment_box,
)
from medviewer.ai.resample import Grid, resample
from medviewer.jobs import JobControl

from .localizer import Localization, Localizer, PreparedScan, SupportSet, extreme_points_from_box, prepare_scan
from .network import MedLAM, MedLAMConfig

DEFAULT_SEGMENTER = "litemedsam"
SEGMENTER_CACHE_BYTES = 256 * 1024 * 1024


def config_from_state_dict(state: dict[str, Any]) -> MedLAMConfig:
    """Base channels and patch size from the tensor shapes (the release: 24 and 64^3)."""
    base = int(state["conv0_1.model.conv1_1.Conv.weight"].shape[0]) // 2
    fc_inputs = int(state["fc1.weight"].shape[1])
    side = round(((fc_inputs // (16 * base)) * 4096) ** (1 / 3))
    return MedLAMConfig(
        base_channels=base,
        patch_size=(side, side, side),
        n_classes=int(state["classification.0.weight"].shape[0]),
    )


def _grid_of(volume: Any, array: np.ndarray, geometry: Any, spacing) -> Grid:
    geometry = geometry if geometry is not None else getattr(volume, "geometry", None)
    grid = Grid.of(geometry) if geometry is not None else Grid.of(shape=array.shape, spacing=spacing)
    if grid.shape != array.shape:
        raise ModelError(f"the geometry {grid.shape} does not match the volume {array.shape}")
    return grid


class MedLSAM(SegmentationModel):
    """3D box -> per-slice 2D segmentation; MedLAM support points -> 3D box."""

    def __init__(
        self,
        info=None,
        *,
        segmenter: SegmentationModel | None = None,
        segmenter_id: str = DEFAULT_SEGMENTER,
        registry: Any = None,
    ):
        super().__init__(info)
        self.segmenter_id = segmenter_id
        self.segmenter_checkpoint: Path | None = None
        self._segmenter = segmenter
        self._owns_segmenter = False  # True when this plugin loaded the 2D model itself
        self._registry = registry
        self._localizer: Localizer | None = None
        self._supports: dict[str, SupportSet] = {}
        self._cache = EmbeddingCache(SEGMENTER_CACHE_BYTES)

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self, checkpoint: Path | None, device: str) -> None:
        """``checkpoint``: MedLAM weights (``medlam.pth``) or None for box mode only."""
        self.device = device
        if checkpoint is not None:
            self.load_localizer(checkpoint, device)
        self.loaded = True

    def load_localizer(self, checkpoint: str | Path, device: str | None = None) -> None:
        device = device or self.device
        state = load_state_dict(checkpoint, key_candidates=("state_dict", "model_state_dict", "model"))
        try:
            config = config_from_state_dict(state)
        except (KeyError, IndexError, ValueError, ZeroDivisionError):
            config = MedLAMConfig()  # not MedLAM: the strict load names what differs
        network = MedLAM(config)
        load_weights_strict(network, state, source=checkpoint)
        self._localizer = Localizer(network.to(device).eval(), device)
        self._supports.clear()
        self.checkpoint_path = Path(checkpoint)

    def unload(self) -> None:
        self._localizer = None
        self._supports.clear()
        if self._segmenter is not None and self._owns_segmenter:
            try:
                self._segmenter.unload()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._segmenter = None
        self._cache.clear()
        self.loaded = False

    @property
    def has_localizer(self) -> bool:
        return self._localizer is not None

    @property
    def localizer(self) -> Localizer:
        if self._localizer is None:
            raise ModelError("MedLAM is not loaded: choose its checkpoint (medlam.pth) to localise structures")
        return self._localizer

    # -- the 2D model --------------------------------------------------------------------------
    def set_segmenter(self, segmenter: SegmentationModel | str, checkpoint: str | Path | None = None) -> None:
        """Use another 2D model: a loaded model object, or a plugin id (loaded on first use)."""
        if isinstance(segmenter, SegmentationModel):
            if segmenter is self._segmenter:
                return
            if not segmenter.info.is_2d:
                raise UnsupportedPromptError(f"{segmenter.info.name} does not segment single slices")
            self._segmenter, self._owns_segmenter = segmenter, False
        else:
            if self._segmenter is not None and str(segmenter) == self.segmenter_id and checkpoint is None:
                return
            if self._segmenter is not None and self._owns_segmenter:
                self._segmenter.unload()
            self.segmenter_id = str(segmenter)
            self.segmenter_checkpoint = Path(checkpoint) if checkpoint is not None else None
            self._segmenter = None
        self._cache.clear()

    def segmenter(self) -> SegmentationModel:
        if self._segmenter is None:
            from medviewer.ai.registry import ModelRegistry

            registry = self._registry or ModelRegistry()
            model = registry.create(self.segmenter_id)
            if not model.info.is_2d:
                raise UnsupportedPromptError(f"{model.info.name} does not segment single slices")
            path = registry.resolve_checkpoint(self.segmenter_id, self.segmenter_checkpoint)
            model.load(path, self.device)
            model.loaded, model.device, model.checkpoint_path = True, self.device, path
            self._segmenter, self._owns_segmenter = model, True
        return self._segmenter

    # -- localisation --------------------------------------------------------------------------
    def _use_features(self, requested: bool | None) -> bool:
        return bool(requested) if requested is not None else str(self.device).startswith("cuda")

    def prepare(self, volume: Any, geometry: Any = None, spacing=None) -> PreparedScan:
        array = np.asarray(getattr(volume, "array", volume))
        grid = _grid_of(volume, array, geometry, spacing or (1.0, 1.0, 1.0))
        return prepare_scan(array, grid, self.localizer.patch)

    def add_support(
        self,
        name: str,
        volume: Any,
        *,
        box=None,
        mask: np.ndarray | None = None,
        geometry: Any = None,
        spacing=None,
        features: bool | None = None,
    ) -> SupportSet:
        """Annotate structure ``name`` on a support (reference) CT: a 3D box (x0, y0, z0, x1,
        y1, z1) in its voxel indices or a mask on its grid. Several calls with one name average
        (MedLSAM uses several support scans). ``features``: also keep the MSS refinement
        features (default: on a GPU only)."""
        scan = self.prepare(volume, geometry, spacing)
        use_features = self._use_features(features)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != scan.volume_grid.shape:
                raise ValueError(f"the support mask is {mask.shape}, the volume {scan.volume_grid.shape}")
            on_grid = resample(mask.astype(np.float32), scan.volume_grid, scan.grid, "linear") > 0.5
            if not on_grid.any():
                raise ValueError("the support mask vanishes at 3 mm; annotate a larger structure")
            support = self.localizer.support_from_mask(scan, on_grid, name, use_features)
        elif box is not None:
            box = box.box if isinstance(box, Prompt3D) else box
            x0, y0, z0, x1, y1, z1 = (float(v) for v in box)
            corners = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)])
            ijk = scan.grid.physical_to_index(scan.volume_grid.index_to_physical(corners))
            kji = ijk[:, ::-1]
            points = extreme_points_from_box(kji.min(axis=0), kji.max(axis=0))
            support = self.localizer.support(scan, points, name, use_features)
        else:
            raise ValueError("give the support structure as a box or a mask")
        known = self._supports.get(name)
        if known is not None:
            known.codes = known.codes + support.codes
            known.count += 1
            for key, value in support.features.items():
                known.features[key] = known.features[key] + value if key in known.features else value
            return known
        self._supports[name] = support
        return support

    @property
    def support_names(self) -> list[str]:
        return list(self._supports)

    def localize(
        self,
        volume: Any,
        name: str | None = None,
        *,
        geometry: Any = None,
        spacing=None,
        refine: bool | None = None,
        control: JobControl | None = None,
    ) -> Localization:
        """The 3D box of support structure ``name`` in ``volume`` (voxel indices x, y, z)."""
        if not self._supports:
            raise ModelError("add a support annotation first (a box or mask of the structure on a reference scan)")
        if name is None:
            if len(self._supports) != 1:
                raise ModelError(f"say which structure to localise: {', '.join(self._supports)}")
            name = next(iter(self._supports))
        support = self._supports.get(name)
        if support is None:
            raise ModelError(f"no support annotation called {name!r} (known: {', '.join(self._supports)})")
        if control is not None:
            control.report(0, 2, f"localising {name}")
        scan = self.prepare(volume, geometry, spacing)
        if control is not None:
            control.check()
        return self.localizer.localize(scan, support, refine=self._use_features(refine) if refine is None else refine)

    # -- segmentation --------------------------------------------------------------------------
    def check_prompt(self, prompt: Prompt3D) -> None:
        if prompt.is_empty and self._supports:
            return  # localise with the support annotations
        super().check_prompt(prompt)

    def box_of(self, prompt: Prompt3D) -> tuple[float, ...] | None:
        """The prompt's 3D box: its box, or the bounding box of two or more positive points."""
        if prompt.box is not None:
            return prompt.box
        positives = np.asarray(prompt.points_with_label(1), dtype=float).reshape(-1, 3)
        if len(positives) >= 2:
            return (*positives.min(axis=0), *positives.max(axis=0))
        if prompt.points:
            raise UnsupportedPromptError("MedLSAM needs a 3D box, or two or more points marking the structure's extent")
        return None

    def predict_3d(
        self,
        volume: np.ndarray,
        prompt: Prompt3D,
        *,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        window: Window | None = None,
        modality: str = "",
        control: JobControl | None = None,
        geometry: Any = None,
        support: str | None = None,
        axis: int = 0,
        settings: PropagationSettings | None = None,
        start: int | None = None,
        stop: threading.Event | None = None,
        on_slice: SliceCallback | None = None,
        refine: bool | None = None,
        segmenter: SegmentationModel | str | None = None,
    ) -> Prediction3D:
        """Segment the prompt's 3D box (or the support structure MedLAM finds) slice by slice.

        ``axis``: slices across array axis 0 (axial), 1 or 2; ``settings``: see
        :class:`~medviewer.ai.propagation.PropagationSettings` (box-mode defaults);
        ``segmenter``: another 2D model (object or plugin id) for this and later calls;
        ``stop`` / ``on_slice``: as in :func:`~medviewer.ai.propagation.segment_box`.
        """
        self.check_prompt(prompt)
        if segmenter is not None:
            self.set_segmenter(segmenter)
        array = np.asarray(getattr(volume, "array", volume))
        if array.ndim != 3:
            raise UnsupportedPromptError(f"MedLSAM needs a 3D volume, got shape {array.shape}")
        grid = _grid_of(volume, array, geometry, spacing)
        box = None if support is not None else self.box_of(prompt)
        localization = None
        if box is None:
            localization = self.localize(
                array, support, geometry=geometry, spacing=grid.spacing, refine=refine, control=control
            )
            box = localization.box
        rects = rects_for_box3d(box, axis, array.shape)
        segmenter = ModelSliceSegmenter(
            self.segmenter(), array, axis, window=window, spacing=grid.spacing, modality=modality, cache=self._cache
        )
        result = segment_box(segmenter, rects, settings, start=start, control=control, stop=stop, on_slice=on_slice)
        prediction = result.to_prediction3d()
        prediction.details.update(
            {
                "model": self.info.id,
                "box": tuple(float(v) for v in box),
                "segmenter": segmenter.model.info.id,
                "localization": localization,
            }
        )
        return prediction


__all__ = ["MedLSAM", "config_from_state_dict"]
