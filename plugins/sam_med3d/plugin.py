"""SAM-Med3D / SAM-Med3D-turbo as a medviewer 3D model: clicks in, a mask on the volume grid out.

Pipeline (the reference inference of uni-medical/SAM-Med3D, reproduced step by step):

1. The crop: 128^3 voxels at 1.5 mm isotropic, its axes reordered/mirrored to RAS like
   torchio's ``ToCanonical`` (an oblique scan stays oblique), centred so that the first
   positive click lies on crop voxel (64, 64, 64). The volume is sampled onto it directly
   (linear interpolation; outside the scan = 0, like the reference's zero padding), which equals
   "resample to 1.5 mm, reorient, crop/pad" up to sub-voxel grid placement.
2. CT is clamped to [-1000, 1000] HU (the training loader did this for CT), then the crop is
   z-normalised with the mean and standard deviation (unbiased) of its voxels > 0.
3. The network sees the crop as a tensor in the crop's own (i, j, k) = (R, A, S) array order;
   click coordinates are voxel indices in that order (not the volume's z-y-x order).
4. Clicks are fed one at a time, as the reference's interactive evaluation does: each click
   alone, with labels as floats, plus the previous 32^3 low-resolution *logits* as the mask
   prompt; the first click gets an all-zero mask (not the "no mask" embedding).
5. The logits are upsampled trilinearly to 128^3, thresholded at sigmoid > 0.5, and the crop
   mask is resampled back onto the volume grid with nearest-neighbour interpolation.

Prompts: :class:`~medviewer.ai.api.Prompt3D` points are **voxel indices (x, y, z) of the
volume** (x = column, y = row, z = slice of the ``[z, y, x]`` array; fractional values
allowed). A GUI holding an LPS point converts it with ``geometry.physical_to_index(point)``,
which returns exactly these (i, j, k) = (x, y, z) indices. A 3D box becomes a positive click
at its centre (the reference CVPR inference does the same); SAM-Med3D has no box prompt.

Iterative refinement: every result carries ``details["low_res_logits"]``, ``["crop_grid"]`` and
``["clicks"]``. Call again with the same clicks plus new ones and only the new clicks are
decoded, continuing from the previous low-resolution mask; the crop is encoded once. This works
through the plain ``Engine.predict_3d`` (the plugin remembers its last session) and explicitly
with ``predict_3d(..., previous=prediction.details)``. Changing or removing an earlier click
starts over from the first click (the crop embedding is reused if the first positive click is
unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.api import Prediction3D, Prompt3D, SegmentationModel, Window
from medviewer.ai.cache import volume_fingerprint
from medviewer.ai.checkpoints import load_state_dict, load_weights_strict, resolve_checkpoint
from medviewer.ai.errors import ModelError, UnsupportedPromptError
from medviewer.ai.resample import Grid, oriented_direction, paste_onto, resample
from medviewer.jobs import JobControl

from .network import Sam3D, Sam3DConfig

CROP_SIZE = 128
TARGET_SPACING = 1.5  # mm, isotropic
CROP_ORIENTATION = "RAS"
CT_CLIP = (-1000.0, 1000.0)
THRESHOLD = 0.5
POINT_MODES = ("sequential", "all")


# -- checkpoint ---------------------------------------------------------------------------------
def config_from_state_dict(state: dict[str, Any]) -> Sam3DConfig:
    """The architecture a state dict was saved from (the released layout gives the defaults).

    Reads embedding width, depth, heads, global blocks and head sizes from tensor shapes, so
    smaller variants with the same layout load too; raises KeyError if it is not SAM-Med3D.
    """
    embed_dim = int(state["image_encoder.patch_embed.proj.weight"].shape[0])
    patch = int(state["image_encoder.patch_embed.proj.weight"].shape[-1])
    grid = int(state["image_encoder.pos_embed"].shape[1])
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_d"].shape[1])
    global_blocks = tuple(
        i for i in range(depth) if int(state[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0]) == 2 * grid - 1
    )
    windowed = [i for i in range(depth) if i not in global_blocks]
    window = (int(state[f"image_encoder.blocks.{windowed[0]}.attn.rel_pos_d"].shape[0]) + 1) // 2 if windowed else 14
    mlp_hidden = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    prompt_dim = int(state["image_encoder.neck.0.weight"].shape[0])
    return Sam3DConfig(
        image_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        mlp_ratio=mlp_hidden / embed_dim,
        global_attn_indexes=global_blocks,
        window_size=window,
        prompt_dim=prompt_dim,
        mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        decoder_depth=1 + max(int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")),
        decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
    )


# -- geometry and preprocessing -------------------------------------------------------------------
def crop_grid_for(volume_grid: Grid, point_xyz) -> Grid:
    """The 128^3, 1.5 mm, RAS-ordered crop whose voxel (64, 64, 64) is the volume point
    ``point_xyz`` (continuous voxel index of the volume)."""
    centre = volume_grid.index_to_physical(np.asarray(point_xyz, dtype=float))
    direction = oriented_direction(volume_grid.direction, CROP_ORIENTATION)
    half = float(CROP_SIZE // 2)
    return Grid.centred(centre, (CROP_SIZE,) * 3, (TARGET_SPACING,) * 3, direction, (half, half, half))


def z_normalise(crop: np.ndarray) -> np.ndarray:
    """torchio's ZNormalization(masking_method=lambda x: x > 0): statistics over voxels > 0
    (unbiased std), applied to every voxel. Falls back to all voxels if none is > 0."""
    values = crop[crop > 0]
    if values.size < 2:
        values = crop.ravel()
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64, ddof=1)) if values.size > 1 else 0.0
    if not std > 0:
        return (crop - mean).astype(np.float32)
    return ((crop - mean) / std).astype(np.float32)


def prepare_crop(volume: np.ndarray, volume_grid: Grid, crop: Grid, modality: str = "") -> np.ndarray:
    """Raw volume -> the network input: (128, 128, 128) float32 in the crop's (i, j, k) order."""
    sampled = resample(volume, volume_grid, crop, interpolator="linear", default=0.0)  # [k, j, i]
    if modality.strip().upper() == "CT":
        np.clip(sampled, *CT_CLIP, out=sampled)
    return np.ascontiguousarray(z_normalise(sampled).transpose(2, 1, 0))


def crop_indices(points_xyz, volume_grid: Grid, crop: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Volume voxel indices (N, 3) -> (rounded crop indices (i, j, k) clipped to the crop,
    boolean 'was inside the crop')."""
    points = np.asarray(points_xyz, dtype=float).reshape(-1, 3)
    continuous = crop.physical_to_index(volume_grid.index_to_physical(points))
    rounded = np.floor(continuous + 0.5)
    inside = np.all((rounded >= 0) & (rounded <= np.asarray(crop.size) - 1), axis=1)
    return np.clip(rounded, 0, np.asarray(crop.size) - 1), inside


def logits_to_crop_mask(low_res: torch.Tensor) -> np.ndarray:
    """(1, 1, 32, 32, 32) logits -> bool (128, 128, 128) in crop (i, j, k) order."""
    full = F.interpolate(low_res.float(), size=(CROP_SIZE,) * 3, mode="trilinear", align_corners=False)
    return (torch.sigmoid(full) > THRESHOLD)[0, 0].cpu().numpy()


def crop_mask_to_volume(mask_ijk: np.ndarray, crop: Grid, volume_grid: Grid) -> np.ndarray:
    """Crop mask (i, j, k) -> bool mask on the volume grid [z, y, x] (nearest neighbour)."""
    return paste_onto(np.ascontiguousarray(mask_ijk.transpose(2, 1, 0)), crop, volume_grid, "nearest", 0, np.bool_)


Click = tuple[tuple[float, float, float], int]


def clicks_of(prompt: Prompt3D) -> tuple[Click, ...]:
    """The prompt as an ordered click list; a box becomes a first, positive click at its centre."""
    clicks: list[Click] = []
    if prompt.box is not None:
        b = prompt.box
        clicks.append((((b[0] + b[3]) / 2.0, (b[1] + b[4]) / 2.0, (b[2] + b[5]) / 2.0), 1))
    clicks.extend(
        (tuple(float(v) for v in p), int(label)) for p, label in zip(prompt.points, prompt.labels, strict=True)
    )
    return tuple(clicks)  # type: ignore[return-value]


@dataclass
class _Encoded:
    key: tuple
    crop: Grid
    embedding: torch.Tensor


@dataclass
class _Session:
    key: tuple
    crop: Grid
    clicks: tuple[Click, ...]
    low_res: torch.Tensor
    prediction: Prediction3D | None  # None when rebuilt from a caller's 'previous' details
    point_mode: str = "sequential"


class SamMed3D(SegmentationModel):
    """Point-prompted 3D segmentation with SAM-Med3D weights (official checkpoint layout)."""

    def __init__(self, info=None, config: Sam3DConfig | None = None):
        super().__init__(info)
        self._config = config
        self._network: Sam3D | None = None
        self._encoded: _Encoded | None = None
        self._session: _Session | None = None
        self.stats = {"encodes": 0, "decodes": 0}

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self, checkpoint: Path | None, device: str) -> None:
        path = checkpoint or resolve_checkpoint(self.info.checkpoint)
        state = load_state_dict(path, key_candidates=("model_state_dict", "model", "state_dict"))
        config = self._config
        if config is None:
            try:
                config = config_from_state_dict(state)
            except (KeyError, IndexError, ValueError, ZeroDivisionError):
                config = Sam3DConfig()  # not SAM-Med3D: the strict load below names what differs
        network = Sam3D(config)
        load_weights_strict(network, state, source=path)
        self._network = network.to(device).eval()
        self.device = device
        self.checkpoint_path = Path(path)
        self.loaded = True
        self._encoded = self._session = None

    def unload(self) -> None:
        self._network = None
        self._encoded = self._session = None
        self.loaded = False

    @property
    def network(self) -> Sam3D:
        if self._network is None:
            raise ModelError("SAM-Med3D is not loaded")
        return self._network

    # -- inference ---------------------------------------------------------------------------
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
        previous: dict[str, Any] | Prediction3D | None = None,
        point_mode: str = "sequential",
    ) -> Prediction3D:
        """Segment from clicks; ``window`` is ignored (the crop is z-normalised).

        ``geometry``: the volume's Geometry (the engine passes it); without it the volume is
        taken as axis-aligned LPS with ``spacing``. ``previous``: the ``details`` of an earlier
        result to continue from. ``point_mode``: "sequential" (reference protocol: one click
        per decoder pass) or "all" (every click at once, with the previous mask).
        """
        self.check_prompt(prompt)
        if point_mode not in POINT_MODES:
            raise ValueError(f"point_mode must be one of {POINT_MODES}, got {point_mode!r}")
        array = np.asarray(getattr(volume, "array", volume))
        if array.ndim != 3:
            raise UnsupportedPromptError(f"SAM-Med3D needs a 3D volume, got shape {array.shape}")
        geometry = geometry if geometry is not None else getattr(volume, "geometry", None)
        volume_grid = Grid.of(geometry) if geometry is not None else Grid.of(shape=array.shape, spacing=spacing)
        if volume_grid.shape != array.shape:
            raise ModelError(f"the geometry {volume_grid.shape} does not match the volume {array.shape}")
        clicks = clicks_of(prompt)
        if not any(label == 1 for _, label in clicks):
            raise UnsupportedPromptError("SAM-Med3D needs a positive click inside the structure first")
        is_ct = modality.strip().upper() == "CT"
        key = (volume_fingerprint(array), volume_grid, is_ct)

        state = self._continuation(key, clicks, previous, point_mode)
        if state is not None and state.clicks == clicks and state.prediction is not None:
            return state.prediction  # nothing new
        if state is None:
            first_positive = next(point for point, label in clicks if label == 1)
            crop = crop_grid_for(volume_grid, first_positive)
            done: tuple[Click, ...] = ()
            low_res = None
        else:
            crop, done, low_res = state.crop, state.clicks, state.low_res
        new_clicks = clicks[len(done) :]
        steps = 2 + (len(new_clicks) if point_mode == "sequential" else 1)
        step = 0

        def report(message: str) -> None:
            nonlocal step
            if control is not None:
                control.report(step, steps, message)
            step += 1

        report("preparing the 128^3 crop")
        embedding = self._embedding(key, crop, array, volume_grid, modality, control)
        report("decoding the clicks")
        network = self.network
        device = embedding.device
        low = network.config.low_res_size
        mask_input = low_res.to(device) if low_res is not None else torch.zeros((1, 1, low, low, low), device=device)
        coords, inside = crop_indices([p for p, _ in clicks], volume_grid, crop)
        labels = np.array([label for _, label in clicks], dtype=np.float32)
        batches = (
            [slice(i, i + 1) for i in range(len(done), len(clicks))]
            if point_mode == "sequential"
            else [slice(0, len(clicks))]
        )
        iou = None
        score = state.prediction.score if state is not None and state.prediction is not None else None
        for chosen in batches:
            points = torch.from_numpy(coords[chosen].astype(np.float32))[None].to(device)
            point_labels = torch.from_numpy(labels[chosen])[None].to(device)
            mask_input, iou = network.decode(embedding, points, point_labels, mask_input)
            self.stats["decodes"] += 1
            report("decoding the clicks")
        mask = crop_mask_to_volume(logits_to_crop_mask(mask_input), crop, volume_grid)
        low_res_np = mask_input[0, 0].float().cpu().numpy()
        prediction = Prediction3D(
            mask=mask,
            probabilities=None,
            score=float(iou.reshape(-1)[0]) if iou is not None else score,
            details={
                "model": self.info.id,
                "low_res_logits": low_res_np,  # (32, 32, 32), crop (i, j, k) order
                "crop_grid": crop,
                "clicks": clicks,
                "crop_clicks": coords.astype(int),
                "clicks_outside_crop": [i for i, ok in enumerate(inside) if not ok],
                "point_mode": point_mode,
            },
        )
        self._session = _Session(key, crop, clicks, mask_input.detach(), prediction, point_mode)
        return prediction

    # -- helpers -----------------------------------------------------------------------------
    def _continuation(self, key, clicks, previous, point_mode: str) -> _Session | None:
        """The earlier state these clicks extend (same volume, earlier clicks unchanged)."""
        if previous is not None:
            details = previous.details if isinstance(previous, Prediction3D) else dict(previous)
            try:
                done = tuple((tuple(float(v) for v in p), int(label)) for p, label in details["clicks"])
                crop = details["crop_grid"]
                low_res = torch.as_tensor(np.asarray(details["low_res_logits"], dtype=np.float32))[None, None]
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"'previous' is not a SAM-Med3D result ({exc})") from exc
            if clicks[: len(done)] == done and isinstance(crop, Grid):
                return _Session(key, crop, done, low_res, None, point_mode)
            return None
        session = self._session
        if (
            session is not None
            and session.key == key
            and session.point_mode == point_mode
            and clicks[: len(session.clicks)] == session.clicks
        ):
            return session
        return None

    def _embedding(self, key, crop: Grid, array, volume_grid: Grid, modality: str, control) -> torch.Tensor:
        cached = self._encoded
        if cached is not None and cached.key == key and cached.crop == crop:
            return cached.embedding
        network_input = prepare_crop(array, volume_grid, crop, modality)
        if control is not None:
            control.check()
        tensor = torch.from_numpy(network_input)[None, None].to(self.device)
        embedding = self.network.encode(tensor)
        self.stats["encodes"] += 1
        self._encoded = _Encoded(key, crop, embedding)
        return embedding


__all__ = [
    "CROP_SIZE",
    "SamMed3D",
    "config_from_state_dict",
    "crop_grid_for",
    "crop_indices",
    "prepare_crop",
    "z_normalise",
]
