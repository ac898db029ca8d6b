"""Shared pieces of the SAM-family plugins (SAM, MedSAM, SAM-Med2D).

Three things live here:

- the architecture *spec* of a segment-anything style network and how to read it from a
  checkpoint's tensor shapes (embedding width, depth, heads, global-attention blocks, input
  size, adapters), so a user never has to say whether a file is ViT-B, ViT-L or ViT-H;
- checkpoint loading through :mod:`medviewer.ai.checkpoints` (``weights_only=True``, strict
  key and shape check, errors that name the offending keys) for any network built from a spec;
- the pre/post-processing steps the reference repositories use, each written to give the
  same numbers as the original code (see the function docstrings).

This module imports torch; only model plugins (imported on first use) and tests import it.
segment-anything itself is imported inside the functions that build networks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.ai.api import Embedding, Prompt2D, SegmentationModel, Window
from medviewer.ai.checkpoints import describe_mismatch, load_state_dict, load_weights_strict, resolve_checkpoint
from medviewer.ai.errors import CheckpointError, ModelError
from medviewer.ai.preprocessing import default_window, longest_side_shape, window_to_uint8

# SAM's normalisation, in 0-255 RGB units (segment_anything/build_sam.py).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

ENCODER_PREFIX = "image_encoder."
_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


# -- architecture spec -----------------------------------------------------------------------
@dataclass(frozen=True)
class SamSpec:
    """Hyper-parameters of a segment-anything network (image encoder + prompt heads).

    The prompt encoder and mask decoder are the same for every official variant (256
    channels, 2-layer two-way transformer with MLP 2048 and 8 heads, 3 + 1 mask tokens);
    only the ViT image encoder and the input size differ. ``adapter`` marks SAM-Med2D's
    encoder, whose blocks carry a channel + spatial adapter.
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    adapter: bool = False

    @property
    def tokens(self) -> int:
        """Tokens per side of the image embedding (64 at 1024, 16 at 256)."""
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the mask decoder's logits and of the mask prompt (4 x tokens)."""
        return 4 * self.tokens

    @property
    def variant(self) -> str:
        """``vit_b`` / ``vit_l`` / ``vit_h`` for the official encoders, else ``custom``."""
        for name, official in OFFICIAL_SAM_SPECS.items():
            if self.encoder_signature == official.encoder_signature:
                return name
        return "custom"

    @property
    def encoder_signature(self) -> tuple:
        return (self.embed_dim, self.depth, self.num_heads, self.global_attn_indexes, self.mlp_ratio)

    def describe(self) -> str:
        name = {"vit_b": "ViT-B", "vit_l": "ViT-L", "vit_h": "ViT-H"}.get(self.variant, "custom ViT")
        adapter = " with adapters" if self.adapter else ""
        return (
            f"{name}{adapter} (embedding {self.embed_dim}, depth {self.depth}, {self.num_heads} heads), "
            f"{self.image_size} x {self.image_size} input"
        )


OFFICIAL_SAM_SPECS: dict[str, SamSpec] = {
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
}


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if value is not None and hasattr(value, "shape") else None


def infer_sam_spec(state: Mapping[str, Any]) -> SamSpec | None:
    """Read the architecture from a state dict's tensor shapes; None when it is not SAM-like.

    - embedding width and patch size: ``image_encoder.patch_embed.proj.weight`` [E, 3, p, p];
    - input size: ``image_encoder.pos_embed`` [1, T, T, E] -> T * p;
    - depth: the number of ``image_encoder.blocks.N`` (N must run 0..depth-1);
    - heads: E / head_dim, head_dim from ``attn.rel_pos_h`` [2 * size - 1, head_dim];
    - global-attention blocks: those whose ``rel_pos_h`` spans the whole token grid
      (2T - 1 rows); the others give the window size (2w - 1 rows);
    - MLP ratio from ``mlp.lin1.weight``, prompt width from ``neck.0.weight``;
    - adapters (SAM-Med2D) from ``blocks.0.Adapter.norm.weight``.
    Only shapes are read, so it works on tensors of any device (including ``meta``).
    """
    patch = _shape(state, "image_encoder.patch_embed.proj.weight")
    pos = _shape(state, "image_encoder.pos_embed")
    neck = _shape(state, "image_encoder.neck.0.weight")
    if patch is None or len(patch) != 4 or pos is None or len(pos) != 4 or neck is None:
        return None
    embed_dim, patch_size = patch[0], patch[2]
    tokens = pos[1]
    if pos[2] != tokens or pos[3] != embed_dim or patch[3] != patch_size:
        return None
    indices = sorted({int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key))})
    if not indices or indices != list(range(len(indices))):
        return None
    rel_rows = []
    head_dims = set()
    for index in indices:
        rel = _shape(state, f"image_encoder.blocks.{index}.attn.rel_pos_h")
        if rel is None or len(rel) != 2:
            return None
        rel_rows.append(rel[0])
        head_dims.add(rel[1])
    lin1 = _shape(state, "image_encoder.blocks.0.mlp.lin1.weight")
    if len(head_dims) != 1 or lin1 is None:
        return None
    head_dim = head_dims.pop()
    if head_dim <= 0 or embed_dim % head_dim:
        return None
    global_rows = 2 * tokens - 1
    global_indexes = tuple(i for i, rows in zip(indices, rel_rows, strict=True) if rows == global_rows)
    window_rows = {rows for rows in rel_rows if rows != global_rows}
    if len(window_rows) > 1:
        return None
    window_size = (window_rows.pop() + 1) // 2 if window_rows else 14
    return SamSpec(
        embed_dim=embed_dim,
        depth=len(indices),
        num_heads=embed_dim // head_dim,
        global_attn_indexes=global_indexes,
        image_size=tokens * patch_size,
        patch_size=patch_size,
        window_size=window_size,
        mlp_ratio=lin1[0] / embed_dim,
        prompt_embed_dim=neck[0],
        adapter="image_encoder.blocks.0.Adapter.norm.weight" in state,
    )


# -- building networks -----------------------------------------------------------------------
def build_image_encoder(spec: SamSpec) -> torch.nn.Module:
    """segment-anything's ``ImageEncoderViT`` with the spec's hyper-parameters."""
    from segment_anything.modeling import ImageEncoderViT

    if spec.adapter:
        raise ValueError("adapter encoders (SAM-Med2D) are built by the sam_med2d plugin")
    return ImageEncoderViT(
        depth=spec.depth,
        embed_dim=spec.embed_dim,
        img_size=spec.image_size,
        mlp_ratio=spec.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec.num_heads,
        patch_size=spec.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=spec.global_attn_indexes,
        window_size=spec.window_size,
        out_chans=spec.prompt_embed_dim,
    )


def build_sam(spec: SamSpec, image_encoder: torch.nn.Module | None = None) -> torch.nn.Module:
    """A ``segment_anything.modeling.Sam`` laid out exactly as ``build_sam.py`` builds it.

    Built without weights (random initialisation): callers load a state dict afterwards.
    ``image_encoder`` replaces the standard ViT (SAM-Med2D's adapter encoder).
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim = spec.prompt_embed_dim
    network = Sam(
        image_encoder=image_encoder if image_encoder is not None else build_image_encoder(spec),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(spec.tokens, spec.tokens),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return network.eval()


def state_dict_layout(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a module's state dict (what a checkpoint must match)."""
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def parameter_count(state: Mapping[str, Any]) -> int:
    return int(sum(int(np.prod(tuple(v.shape))) for v in state.values()))


def load_sam_family(
    path: str | Path,
    builder: Callable[[SamSpec], torch.nn.Module],
    *,
    model_name: str,
    fallback_spec: SamSpec,
    adapter: bool,
    expected_file: str = "",
) -> tuple[torch.nn.Module, SamSpec]:
    """Load a SAM-family checkpoint safely and build the network it describes.

    The state dict is read with ``weights_only=True`` (bare or nested under 'model' /
    'state_dict'), its architecture is inferred from the tensor shapes, and the network is
    filled strictly. A file for another architecture raises :class:`CheckpointError` naming
    missing / unexpected keys and shape mismatches; the comparison runs on a ``meta`` copy of
    the network, so a wrong file fails fast without allocating a model, and a right one is
    loaded into that copy without a random initialisation first.
    """
    path = Path(path)
    state = load_state_dict(path)
    inferred = infer_sam_spec(state)
    spec = replace(inferred, adapter=adapter) if inferred is not None else fallback_spec
    with torch.device("meta"):
        skeleton = builder(spec)
    problems = describe_mismatch(skeleton.state_dict(), state)
    if problems:
        hint = f" (expected a file like {expected_file})" if expected_file else ""
        raise CheckpointError(
            f"{path}: does not fit the {model_name} architecture ({spec.describe()}): {problems}. "
            f"Is it the checkpoint for this model{hint}?"
        )
    return _materialise(skeleton, builder, spec, state, path).eval(), spec


def _materialise(skeleton: torch.nn.Module, builder, spec: SamSpec, state: Mapping[str, Any], path: Path):
    """Fill the meta skeleton with the checkpoint's tensors (no random initialisation, no
    second copy of the weights in memory: seconds and gigabytes for ViT-H).

    Floating tensors are converted to float32 (the dtype the code paths expect). The only
    tensors a state dict does not carry are ``Sam``'s non-persistent pixel mean/std buffers,
    which are set again here; anything else left on ``meta`` falls back to an ordinary build.
    """
    weights = {
        key: value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        for key, value in state.items()
    }
    skeleton.load_state_dict(weights, strict=True, assign=True)
    if hasattr(skeleton, "pixel_mean"):
        skeleton.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        skeleton.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
    leftovers = [name for name, tensor in [*skeleton.named_parameters(), *skeleton.named_buffers()] if tensor.is_meta]
    if not leftovers:
        return skeleton
    network = builder(spec)
    load_weights_strict(network, weights, source=path)
    return network


class SamFamilyModel(SegmentationModel):
    """Common lifecycle of the SAM-family plugins; subclasses implement encode/decode."""

    #: Shown in error messages.
    display_name = "SAM"
    #: The official file name users should pick (error hints).
    expected_file = ""
    adapter = False
    fallback_spec = OFFICIAL_SAM_SPECS["vit_b"]

    def __init__(self, info=None):
        super().__init__(info)
        self._network: torch.nn.Module | None = None
        self.spec: SamSpec | None = None

    def build(self, spec: SamSpec) -> torch.nn.Module:
        return build_sam(spec)

    def load(self, checkpoint: Path | None, device: str) -> None:
        path = checkpoint or resolve_checkpoint(self.info.checkpoint, getattr(self, "plugin_folder", None))
        network, spec = load_sam_family(
            path,
            self.build,
            model_name=self.display_name,
            fallback_spec=self.fallback_spec,
            adapter=self.adapter,
            expected_file=self.expected_file,
        )
        self._network = network.to(device)
        self.spec = spec
        self.device = device
        self.checkpoint_path = Path(path)
        self.loaded = True

    def unload(self) -> None:
        self._network = None
        self.loaded = False

    @property
    def network(self) -> torch.nn.Module:
        if self._network is None:
            raise ModelError(f"{self.display_name} is not loaded")
        return self._network

    def _checked_slice(self, image2d: np.ndarray) -> np.ndarray:
        image = np.asarray(image2d)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ModelError(f"{self.display_name} encodes one 2D slice, got an array of shape {image.shape}")
        return image

    def _embedding(self, features, original, resized, scale, window, **extra) -> Embedding:
        spec = self.spec
        assert spec is not None
        size = spec.image_size
        return Embedding(
            model_id=self.info.id,
            features=features,
            original_size=(int(original[0]), int(original[1])),
            resized_size=(int(resized[0]), int(resized[1])),
            input_size=(size, size),
            scale=float(scale),
            padding=(size - int(resized[0]), size - int(resized[1])),
            window=(float(window[0]), float(window[1])),
            extra=dict(extra),
        )

    def _encode_stretched(self, image2d, window, modality, control, preprocess) -> Embedding:
        """Encode a slice squashed to the square input (MedSAM, SAM-Med2D: no aspect kept).

        ``preprocess(image, window, size)`` is the model's own image preparation; prompts
        are later scaled per axis with the ``scale_xy`` recorded here.
        """
        image = self._checked_slice(image2d)
        window = resolve_window(image, window, modality)
        size = self.spec.image_size
        network_input = preprocess(image, window, size)
        if control is not None:
            control.check()
        with torch.inference_mode():
            features = self.network.image_encoder(network_input.to(self.device))
        rows, columns = image.shape
        return self._embedding(
            features, image.shape, (size, size), size / columns, window, scale_xy=(size / columns, size / rows)
        )

    def _prompt_tensors(self, embedding: Embedding, prompt: Prompt2D, previous_low_res_mask, *, as_probabilities: bool):
        """Point, box and mask-prompt tensors on the embedding's device (mask: SAM feeds back
        logits, SAM-Med2D sigmoid probabilities)."""
        self.check_prompt(prompt)
        device = embedding.features.device
        points, boxes = point_and_box_tensors(prompt, embedding.original_size, embedding.resized_size, device)
        masks = mask_prompt(
            previous_low_res_mask, self.spec.low_res_size, device,
            as_probabilities=as_probabilities, model_name=self.display_name,
        )
        return points, boxes, masks

    def _run_decoder(self, embedding: Embedding, points, boxes, masks, multimask: bool):
        """Prompt encoder + mask decoder; returns (low-res logits [1, 1, s, s], predicted IoU).

        With ``multimask`` the decoder's three candidate masks are scored by its IoU head and
        the best one is kept, as SamPredictor's users and SAM-Med2D's predictor do.
        """
        network = self.network
        with torch.inference_mode():
            sparse, dense = network.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res, iou = network.mask_decoder(
                image_embeddings=embedding.features,
                image_pe=network.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        best = int(torch.argmax(iou[0]))
        return low_res[:, best : best + 1], float(iou[0, best])


# -- preprocessing ---------------------------------------------------------------------------
def resolve_window(image: np.ndarray, window: Window | None, modality: str) -> tuple[float, float]:
    """The caller's window, or the default for the modality (CT 40/400, else percentiles)."""
    if window is None:
        window = default_window(image, modality)
    return (float(window[0]), float(window[1]))


def to_uint8(image: np.ndarray, window: Window) -> np.ndarray:
    """Window a raw slice to 8 bits (clip, linear map to 0..255, truncate)."""
    return window_to_uint8(image, window)


def resize_longest_side_bilinear(image_uint8: np.ndarray, target: int) -> np.ndarray:
    """SAM's ``ResizeLongestSide.apply_image``: PIL bilinear resize, longest side -> target.

    segment-anything converts the array to a PIL image and calls torchvision's ``resize``,
    which for PIL images is ``Image.resize((w, h), BILINEAR)``; new size = int(old * target /
    max + 0.5). Resizing one grey channel gives the same bytes as each channel of the RGB copy.
    """
    from PIL import Image

    rows, columns = image_uint8.shape[:2]
    new_rows, new_columns = longest_side_shape(rows, columns, target)
    resized = Image.fromarray(np.ascontiguousarray(image_uint8)).resize((new_columns, new_rows), Image.BILINEAR)
    return np.array(resized)  # a writable copy (torch warns about read-only buffers)


def sam_normalise_and_pad(image_uint8: np.ndarray, target: int) -> torch.Tensor:
    """``Sam.preprocess``: (RGB - mean) / std in float32, zero-pad bottom/right to target.

    ``image_uint8`` is one grey channel (rows, columns); it becomes the three identical RGB
    channels SAM expects. Returns a [1, 3, target, target] tensor.
    """
    grey = torch.from_numpy(np.ascontiguousarray(image_uint8))
    rgb = grey[None].expand(3, -1, -1)[None].float()
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1)
    normalised = (rgb - mean) / std
    rows, columns = image_uint8.shape
    return F.pad(normalised, (0, target - columns, 0, target - rows))


def scale_xy(
    values: Sequence[Sequence[float]], original_size: tuple[int, int], new_size: tuple[int, int]
) -> np.ndarray:
    """Scale (x, y) pairs per axis: x * new_w / old_w, y * new_h / old_h.

    This is segment-anything's ``ResizeLongestSide.apply_coords`` (with new size = the
    rounded resized size, so the two factors can differ slightly) and SAM-Med2D's
    ``apply_coords`` (new size 256 x 256). Boxes are two (x, y) pairs.
    """
    old_rows, old_columns = original_size
    new_rows, new_columns = new_size
    coords = np.array(values, dtype=np.float64).reshape(-1, 2)
    coords[:, 0] *= new_columns / old_columns
    coords[:, 1] *= new_rows / old_rows
    return coords


def point_and_box_tensors(
    prompt: Prompt2D, original_size: tuple[int, int], new_size: tuple[int, int], device
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """Prompt in slice pixels -> (points, labels) [1, N, 2] / [1, N] and box [1, 4] in input pixels."""
    points = boxes = None
    if prompt.points:
        coords = scale_xy(prompt.points, original_size, new_size)
        points = (
            torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
            torch.as_tensor(prompt.labels, dtype=torch.int, device=device)[None],
        )
    if prompt.box is not None:
        box = scale_xy(np.reshape(prompt.box, (2, 2)), original_size, new_size).reshape(1, 4)
        boxes = torch.as_tensor(box, dtype=torch.float32, device=device)
    return points, boxes


def mask_prompt(
    previous_low_res_mask: np.ndarray | None, size: int, device, *, as_probabilities: bool, model_name: str
) -> torch.Tensor | None:
    """A previous prediction's low-res logits -> the decoder's mask prompt [1, 1, size, size].

    SAM takes logits back; SAM-Med2D's interactive loop feeds back ``sigmoid(logits)``
    (``as_probabilities``). The mask must come from the same model (same low-res grid).
    """
    if previous_low_res_mask is None:
        return None
    previous = np.asarray(previous_low_res_mask, dtype=np.float32)
    previous = np.squeeze(previous)
    if previous.shape != (size, size):
        raise ModelError(
            f"{model_name} refines a previous mask given as its own {size} x {size} low-resolution logits "
            f"(Prediction.low_res_logits); got an array of shape {np.shape(previous_low_res_mask)}"
        )
    if not np.all(np.isfinite(previous)):
        raise ModelError(f"{model_name}: the previous low-resolution mask contains non-finite values")
    tensor = torch.from_numpy(np.ascontiguousarray(previous))[None, None].to(device)
    return torch.sigmoid(tensor) if as_probabilities else tensor


# -- postprocessing --------------------------------------------------------------------------
def sam_postprocess_logits(
    low_res_logits: torch.Tensor, image_size: int, resized_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """``Sam.postprocess_masks``: logits -> bilinear to the padded input size -> crop the
    unpadded region -> bilinear to the slice size (align_corners=False throughout)."""
    masks = F.interpolate(low_res_logits, (image_size, image_size), mode="bilinear", align_corners=False)
    masks = masks[..., : resized_size[0], : resized_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def as_numpy_2d(tensor: torch.Tensor) -> np.ndarray:
    return tensor.reshape(tensor.shape[-2:]).float().cpu().numpy()
