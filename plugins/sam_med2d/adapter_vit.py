"""SAM-Med2D's image encoder: SAM's ViT with a channel + spatial adapter in every block.

Written for medviewer from the architecture described by OpenGVLab/SAM-Med2D (Apache-2.0);
the module and parameter names are chosen so that the official ``sam-med2d_b.pth`` state
dict loads strictly:

``image_encoder.blocks.N.Adapter.norm``        LayerNorm(C) (eps 1e-5)
``image_encoder.blocks.N.Adapter.channel.0``   Linear(C, C/4, no bias)   } squeeze-excitation
``image_encoder.blocks.N.Adapter.channel.2``   Linear(C/4, C, no bias)   } style channel gate
``image_encoder.blocks.N.Adapter.spatial.0``   Conv2d(C, C, 3, stride 2, pad 1, no bias)
``image_encoder.blocks.N.Adapter.spatial.2``   ConvTranspose2d(C, C, 4, stride 2, pad 1, no bias)

Each block computes ``x = x + attn(norm1(x))`` (window or global attention with decomposed
relative positions, as in SAM), then ``x + mlp(norm2(x)) + adapter(norm2(x))``; the adapter
maps ``y`` to ``norm(y + spatial(y * gate(avgpool(y))))`` with ReLUs after each conv and a
sigmoid gate. Attention, patch embedding, window partitioning and the neck reuse
segment-anything's modules, so everything except the adapter is SAM's code path.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block, PatchEmbed, window_partition, window_unpartition
from torch import nn

from medviewer.ai.sam_common import SamSpec

ADAPTER_RATIO = 0.25


class ChannelSpatialAdapter(nn.Module):
    """The per-block adapter: channel gate, then a down/up-sampling spatial branch, residual, norm."""

    def __init__(self, dim: int, ratio: float = ADAPTER_RATIO):
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [B, H, W, C] tokens -> same shape."""
        maps = x.permute(0, 3, 1, 2)
        gate = self.channel(F.adaptive_avg_pool2d(maps, 1).flatten(1))
        refined = self.spatial(maps * gate[:, :, None, None])
        return self.norm((maps + refined).permute(0, 2, 3, 1))


class AdapterBlock(Block):
    """SAM's transformer block plus an adapter in parallel with the MLP."""

    def __init__(self, dim: int, *args, **kwargs):
        super().__init__(dim, *args, **kwargs)
        self.Adapter = ChannelSpatialAdapter(dim)  # the official key name is capitalised

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            rows, columns = x.shape[1], x.shape[2]
            x, padded = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, padded, (rows, columns))
        x = shortcut + x
        normed = self.norm2(x)
        return x + self.mlp(normed) + self.Adapter(normed)


class AdapterImageEncoderViT(nn.Module):
    """Patch embedding + absolute positions + adapter blocks + SAM's neck (to 256 channels)."""

    def __init__(self, spec: SamSpec):
        super().__init__()
        tokens = spec.tokens
        self.img_size = spec.image_size
        self.patch_embed = PatchEmbed(
            kernel_size=(spec.patch_size, spec.patch_size),
            stride=(spec.patch_size, spec.patch_size),
            in_chans=3,
            embed_dim=spec.embed_dim,
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, tokens, spec.embed_dim))
        self.blocks = nn.ModuleList(
            AdapterBlock(
                spec.embed_dim,
                num_heads=spec.num_heads,
                mlp_ratio=spec.mlp_ratio,
                qkv_bias=True,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                act_layer=nn.GELU,
                use_rel_pos=True,
                rel_pos_zero_init=True,
                window_size=0 if index in spec.global_attn_indexes else spec.window_size,
                input_size=(tokens, tokens),
            )
            for index in range(spec.depth)
        )
        out = spec.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(spec.embed_dim, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
