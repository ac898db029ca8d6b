"""Synthetic checkpoints in the official layouts of SAM, MedSAM and SAM-Med2D.

No real weights can be downloaded here, so tests build each architecture with random weights
and save the state dict exactly as the released files hold it:

- SAM (``sam_vit_b_01ec64.pth`` etc.) and MedSAM (``medsam_vit_b.pth``): a flat state dict
  of segment-anything's ``Sam`` (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``);
- SAM-Med2D (``sam-med2d_b.pth``): ``{'model': state_dict}`` of SAM ViT-B at 256 x 256 with
  an adapter in every encoder block.

SAM/MedSAM networks come from segment-anything's own builder (``_build_sam``, the function
behind ``sam_model_registry``) so the plugin is checked against an independent construction;
SAM-Med2D has no installable reference, so its network comes from the plugin's builder and its
layout is checked separately against the documented numbers (386 keys, 271.2 M parameters).

Behaviour tests use small encoders (few blocks, narrow embedding) with the real prompt
encoder and mask decoder; the layout tests build the full-size models on the ``meta`` device,
which allocates nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from medviewer.ai.registry import ModelRegistry
from medviewer.ai.sam_common import SamSpec

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"

#: A narrow 2-block ViT at SAM's real 1024 x 1024 input (block 1 global, block 0 windowed).
TINY_SAM = SamSpec(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), image_size=1024)
#: The same at SAM-Med2D's 256 x 256 input, with adapters.
TINY_SAM_MED2D = SamSpec(embed_dim=32, depth=3, num_heads=2, global_attn_indexes=(2,), image_size=256, adapter=True)


def bundled_registry() -> ModelRegistry:
    """The repository's bundled plugins only (no user folders, no entry points)."""
    return ModelRegistry(bundled_dir=PLUGINS, user_dirs=[], entry_points=[])


def plugin_module(model_id: str, registry: ModelRegistry | None = None) -> ModuleType:
    """The plugin's module, imported the way the app imports it (through the registry)."""
    registry = registry or bundled_registry()
    return sys.modules[registry.model_class(model_id).__module__]


def _randomise_zero_initialised(network: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised tensors (absolute and relative positions) small random values,
    so a mistake in how they are used changes the outputs."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "pos_embed" in name or "rel_pos" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def reference_sam(spec: SamSpec = TINY_SAM, seed: int = 0) -> torch.nn.Module:
    """segment-anything's own ``Sam`` with random weights (its ``_build_sam``, image size 1024)."""
    from segment_anything.build_sam import _build_sam

    if spec.image_size != 1024 or spec.adapter:
        raise ValueError("segment-anything's builder makes 1024 x 1024 models without adapters")
    torch.manual_seed(seed)
    network = _build_sam(
        encoder_embed_dim=spec.embed_dim,
        encoder_depth=spec.depth,
        encoder_num_heads=spec.num_heads,
        encoder_global_attn_indexes=list(spec.global_attn_indexes),
    )
    _randomise_zero_initialised(network, seed)
    return network.eval()


def sam_med2d_network(spec: SamSpec = TINY_SAM_MED2D, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    network = plugin_module("sam_med2d").build_network(spec)
    _randomise_zero_initialised(network, seed)
    return network.eval()


def save_sam_checkpoint(path: Path, spec: SamSpec = TINY_SAM, seed: int = 0) -> Path:
    """A flat segment-anything state dict, as in sam_vit_*.pth and medsam_vit_b.pth."""
    torch.save(reference_sam(spec, seed).state_dict(), path)
    return Path(path)


save_medsam_checkpoint = save_sam_checkpoint


def save_sam_med2d_checkpoint(path: Path, spec: SamSpec = TINY_SAM_MED2D, seed: int = 0) -> Path:
    """``{'model': state_dict}``, as in sam-med2d_b.pth."""
    torch.save({"model": sam_med2d_network(spec, seed).state_dict()}, path)
    return Path(path)


def load_reference_weights(network: torch.nn.Module, path: Path) -> torch.nn.Module:
    """What the reference scripts do with a checkpoint (restricted to plain tensors here)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(raw["model"] if "model" in raw else raw)
    return network.eval()


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * keep)])
    return Path(target)


class _NotWeights:
    """An object a plain-weights loader must refuse to unpickle."""

    def __init__(self):
        self.payload = "code would run here"


def save_pickle_checkpoint(path: Path) -> Path:
    """A checkpoint that needs full pickle (a custom class) next to real tensors."""
    torch.save({"model": {"image_encoder.pos_embed": torch.zeros(1, 2, 2, 4)}, "extra": _NotWeights()}, path)
    return Path(path)


def synthetic_ct_slice(rows: int = 90, columns: int = 150, seed: int = 0) -> np.ndarray:
    """Hounsfield-like int16 slice: air, soft tissue disc, a bright 'bone' block, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :columns]
    image = np.full((rows, columns), -1000.0)
    body = ((y - rows / 2) / (rows * 0.45)) ** 2 + ((x - columns / 2) / (columns * 0.45)) ** 2 < 1
    image[body] = 40.0
    image[(abs(y - rows * 0.4) < rows * 0.12) & (abs(x - columns * 0.6) < columns * 0.08)] = 700.0
    image += rng.normal(0, 20, size=image.shape)
    return image.astype(np.int16)


def reference_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Windowing as the reference preprocessing scripts write it (clip, scale to 0-255, uint8)."""
    low, high = window
    clipped = np.clip(image.astype(np.float64), low, high)
    return np.uint8((clipped - low) / (high - low) * 255.0)


# -- instrumenting a loaded network ------------------------------------------------------------
def ramp(size: int, boundary: float, axis: str, channels: int = 4) -> torch.Tensor:
    """Low-res logits that fall linearly along one axis and cross 0 at pixel edge ``boundary``."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    values = boundary - centres
    grid = values[:, None].expand(size, size) if axis == "rows" else values[None, :].expand(size, size)
    return grid[None, None].expand(1, channels, size, size).clone()


def install_fake_decoder(monkeypatch, network, low_res: torch.Tensor, iou: torch.Tensor, calls: list):
    """Replace the mask decoder by one that returns known logits, sliced like SAM's decoder
    (token 0 = the single-mask output, tokens 1-3 = the three multimask candidates)."""

    def forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        calls.append(multimask_output)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return low_res[:, chosen], iou[:, chosen]

    monkeypatch.setattr(network.mask_decoder, "forward", forward)


def spy_prompt_encoder(monkeypatch, network, seen: list):
    original = network.prompt_encoder.forward

    def forward(points, boxes, masks):
        seen.append({"points": points, "boxes": boxes, "masks": masks})
        return original(points=points, boxes=boxes, masks=masks)

    monkeypatch.setattr(network.prompt_encoder, "forward", forward)
