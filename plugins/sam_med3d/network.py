"""SAM-Med3D's network (3D ViT-B image encoder, 3D prompt encoder, 3D mask decoder), written
for medviewer so that the official checkpoints load strictly.

The parameter names, shapes and the arithmetic follow the published architecture
(uni-medical/SAM-Med3D, ``build_sam3D.py`` variant ``vit_b_ori``). Behaviour the trained weights
depend on is reproduced on purpose, even where it looks odd:

* windowed blocks use a 14^3 window on an 8^3 token grid, so every windowed block zero-pads the
  (normalised) tokens to 14^3 and attends over all 2744 positions, padding included;
* relative positions: windowed blocks hold tables of 2*14-1 = 27 rows, global blocks 2*8-1 = 15;
* the dense positional encoding of the prompt encoder puts the index along the *second* grid
  axis into its first coordinate and the first into its second (``cumsum`` over dim 1 feeds
  "x"), while point coordinates are encoded in the array's own order: the pair does not
  line up, and the trained model expects exactly that;
* the random-Fourier features are ``[sin, cos, sin]`` of 128 frequencies (384 channels);
* points are shifted by half a voxel and divided by the 128^3 input size; a padding point at the
  origin with label -1 is appended when no box is given (boxes are not supported);
* a mask input always goes through ``mask_downscaling`` (an all-zero mask on the first click,
  not the "no mask" embedding).

Only torch is needed (no torchvision, no segment_anything import).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Sam3DConfig:
    """Hyper-parameters; the defaults are the released SAM-Med3D / SAM-Med3D-turbo model."""

    image_size: int = 128
    patch_size: int = 16
    in_channels: int = 1
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    prompt_dim: int = 384
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        return self.image_size // 4


# ---------------------------------------------------------------------------------------------
# shared pieces
class ChannelLayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, X, Y, Z) tensor (parameters 'weight', 'bias')."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class FeedForward(nn.Module):
    """Two linear layers ('lin1', 'lin2') with an activation between them."""

    def __init__(self, dim: int, hidden: int, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class HeadMLP(nn.Module):
    """'layers.N' linear stack with ReLU between layers (hypernetworks and the IoU head)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, count: int):
        super().__init__()
        sizes = [in_dim] + [hidden] * (count - 1)
        outs = [hidden] * (count - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, outs, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x)
        return x


# ---------------------------------------------------------------------------------------------
# image encoder
def _relative_table(size_q: int, size_k: int, table: torch.Tensor) -> torch.Tensor:
    """(size_q, size_k, C) embeddings for every query/key offset along one axis."""
    length = 2 * max(size_q, size_k) - 1
    if table.shape[0] != length:  # never for the released model; kept for odd configurations
        table = F.interpolate(table.T[None], size=length, mode="linear")[0].T
    q = torch.arange(size_q, device=table.device)[:, None] * max(size_k / size_q, 1.0)
    k = torch.arange(size_k, device=table.device)[None, :] * max(size_q / size_k, 1.0)
    offsets = (q - k) + (size_k - 1) * max(size_q / size_k, 1.0)
    return table[offsets.long()]


class EncoderAttention(nn.Module):
    """Multi-head self-attention over a (B, D, H, W, C) token grid with decomposed 3D relative
    position terms (parameters 'qkv', 'proj', 'rel_pos_d', 'rel_pos_h', 'rel_pos_w')."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int, int]):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[2] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, d, h, w, dim = x.shape
        tokens = d * h * w
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        head_dim = q.shape[-1]
        # Relative position bias: q . R along each axis, broadcast over the other two key axes.
        r_q = q.reshape(batch * self.num_heads, d, h, w, head_dim)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, _relative_table(d, d, self.rel_pos_d))
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, _relative_table(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, _relative_table(w, w, self.rel_pos_w))
        bias = (
            rel_d[:, :, :, :, :, None, None] + rel_h[:, :, :, :, None, :, None] + rel_w[:, :, :, :, None, None, :]
        ).reshape(batch, self.num_heads, tokens, tokens)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.permute(0, 2, 1, 3).reshape(batch, d, h, w, dim)
        return self.proj(out)


def _pad_to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad a (B, D, H, W, C) grid up to multiples of ``window`` and cut it into windows."""
    batch, d, h, w, channels = x.shape
    pads = [(window - n % window) % window for n in (d, h, w)]
    if any(pads):
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
    x = x.view(batch, dp // window, window, hp // window, window, wp // window, window, channels)
    windows = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window, window, window, channels)
    return windows, (dp, hp, wp)


def _merge_windows(windows: torch.Tensor, window: int, padded, original) -> torch.Tensor:
    dp, hp, wp = padded
    d, h, w = original
    count = (dp // window) * (hp // window) * (wp // window)
    batch = windows.shape[0] // count
    x = windows.view(batch, dp // window, hp // window, wp // window, window, window, window, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, dp, hp, wp, -1)
    return x[:, :d, :h, :w, :].contiguous()


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; windowed blocks pad the normalised tokens to whole windows."""

    def __init__(self, config: Sam3DConfig, window: int):
        super().__init__()
        dim = config.embed_dim
        self.window = window
        grid = (window,) * 3 if window > 0 else (config.grid,) * 3
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, config.num_heads, grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * config.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            size = x.shape[1:4]
            x, padded = _pad_to_windows(x, self.window)
            x = self.attn(x)
            x = _merge_windows(x, self.window, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed3D(nn.Module):
    def __init__(self, config: Sam3DConfig):
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv3d(config.in_channels, config.embed_dim, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)  # (B, X, Y, Z, C)


class ImageEncoder3D(nn.Module):
    def __init__(self, config: Sam3DConfig):
        super().__init__()
        g = config.grid
        self.img_size = config.image_size
        self.patch_embed = PatchEmbed3D(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, g, config.embed_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(config, 0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.depth)
        )
        out = config.prompt_dim
        self.neck = nn.Sequential(
            nn.Conv3d(config.embed_dim, out, kernel_size=1, bias=False),
            ChannelLayerNorm3d(out),
            nn.Conv3d(out, out, kernel_size=3, padding=1, bias=False),
            ChannelLayerNorm3d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))  # (B, 384, 8, 8, 8)


# ---------------------------------------------------------------------------------------------
# prompt encoder
class RandomFourierEncoding3D(nn.Module):
    """Random spatial frequencies ('positional_encoding_gaussian_matrix' [3, C/3])."""

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((3, features)))

    def encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        """Coordinates in [0, 1] (..., 3) -> (..., 3 * features) as [sin, cos, sin]."""
        projected = 2 * math.pi * ((2 * unit_coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(projected), torch.cos(projected), torch.sin(projected)], dim=-1)

    def dense(self, size: tuple[int, int, int]) -> torch.Tensor:
        """(C, X, Y, Z) encoding of the embedding grid; first coordinate runs along grid axis 1."""
        sx, sy, sz = size
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones((sx, sy, sz), device=device, dtype=torch.float32)
        along0 = (ones.cumsum(dim=0) - 0.5) / sy
        along1 = (ones.cumsum(dim=1) - 0.5) / sx
        along2 = (ones.cumsum(dim=2) - 0.5) / sz
        return self.encode(torch.stack([along1, along0, along2], dim=-1)).permute(3, 0, 1, 2)

    def points(self, coords: torch.Tensor, image_size: tuple[int, int, int]) -> torch.Tensor:
        scale = torch.tensor(image_size, dtype=torch.float32, device=coords.device)
        return self.encode(coords.float() / scale)


class PromptEncoder3D(nn.Module):
    def __init__(self, config: Sam3DConfig):
        super().__init__()
        dim = config.prompt_dim
        g = config.grid
        self.embed_dim = dim
        self.image_embedding_size = (g, g, g)
        self.input_image_size = (config.image_size,) * 3
        self.pe_layer = RandomFourierEncoding3D(dim // 3)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(2))  # negative, positive
        self.not_a_point_embed = nn.Embedding(1, dim)
        chans = config.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, chans // 4, kernel_size=2, stride=2),
            ChannelLayerNorm3d(chans // 4),
            nn.GELU(),
            nn.Conv3d(chans // 4, chans, kernel_size=2, stride=2),
            ChannelLayerNorm3d(chans),
            nn.GELU(),
            nn.Conv3d(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) voxel indices of the 128^3 input and (B, N) float labels 1 / 0 ->
        (B, N + 1, C) sparse embeddings (a padding point is appended: there is never a box)."""
        labels = labels.float()
        coords = coords.float() + 0.5
        batch = coords.shape[0]
        coords = torch.cat([coords, torch.zeros((batch, 1, 3), device=coords.device)], dim=1)
        labels = torch.cat([labels, -torch.ones((batch, 1), device=labels.device)], dim=1)
        embedding = self.pe_layer.points(coords, self.input_image_size)
        padding = (labels == -1).unsqueeze(-1)
        embedding = torch.where(padding, torch.zeros_like(embedding), embedding)
        embedding = embedding + padding * self.not_a_point_embed.weight
        embedding = embedding + (labels == 0).unsqueeze(-1) * self.point_embeddings[0].weight
        embedding = embedding + (labels == 1).unsqueeze(-1) * self.point_embeddings[1].weight
        return embedding

    def forward(self, coords: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None):
        sparse = self.embed_points(coords, labels)
        if mask is not None:
            dense = self.mask_downscaling(mask)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(
                coords.shape[0], -1, *self.image_embedding_size
            )
        return sparse, dense


# ---------------------------------------------------------------------------------------------
# mask decoder
class TokenAttention(nn.Module):
    """Attention with optional down-projection ('q_proj', 'k_proj', 'v_proj', 'out_proj')."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1):
        super().__init__()
        self.num_heads = num_heads
        internal = dim // downsample
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(dim, internal)
        self.v_proj = nn.Linear(dim, internal)
        self.out_proj = nn.Linear(internal, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, heads, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, heads * c))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = TokenAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, 2)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer3D(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MaskDecoder3D(nn.Module):
    def __init__(self, config: Sam3DConfig):
        super().__init__()
        dim = config.prompt_dim
        self.transformer = TwoWayTransformer3D(dim, config.decoder_depth, config.decoder_heads, config.decoder_mlp_dim)
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(dim, dim // 4, kernel_size=2, stride=2),
            ChannelLayerNorm3d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose3d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            HeadMLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = HeadMLP(dim, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth)

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool = False):
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
        src = image_embeddings
        if src.shape[0] != tokens.shape[0]:
            src = torch.repeat_interleave(src, tokens.shape[0], dim=0)
        src = src + dense
        pos = image_pe
        if pos.shape[0] != tokens.shape[0]:
            pos = torch.repeat_interleave(pos, tokens.shape[0], dim=0)
        b, c, x, y, z = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, x, y, z))
        hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, x, y, z = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c, x * y * z)).reshape(b, -1, x, y, z)
        iou = self.iou_prediction_head(iou_out)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]


# ---------------------------------------------------------------------------------------------
class Sam3D(nn.Module):
    """image_encoder + prompt_encoder + mask_decoder; state-dict names match the checkpoints."""

    def __init__(self, config: Sam3DConfig | None = None):
        super().__init__()
        self.config = config or Sam3DConfig()
        self.image_encoder = ImageEncoder3D(self.config)
        self.prompt_encoder = PromptEncoder3D(self.config)
        self.mask_decoder = MaskDecoder3D(self.config)

    @torch.inference_mode()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 1, 128, 128, 128) z-normalised crop -> (1, 384, 8, 8, 8) embedding."""
        return self.image_encoder(image)

    @torch.inference_mode()
    def decode(
        self,
        embedding: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (1, N, 3) in crop voxel indices, float labels (1, N), mask logits
        (1, 1, 32, 32, 32) or None -> (low-res logits (1, 1, 32, 32, 32), IoU (1, 1))."""
        sparse, dense = self.prompt_encoder(coords, labels, mask_input)
        return self.mask_decoder(embedding, self.prompt_encoder.dense_pe(), sparse, dense, multimask_output=False)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
