"""SAM-Med3D / SAM-Med3D-turbo: checkpoint layout, the reference quirks, geometry and iterative clicks.

No real SAM-Med3D weights can be obtained here, so the tests use random weights saved in the
official layout ({'model_state_dict': ...}). The full-size model is built once to check the
layout against the release (324 tensors, 100.5 M parameters); behaviour is tested on a small
configuration of the same architecture, with the decoder replaced by a recorder where the
test needs to know exactly what reached the network.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medviewer.ai.api import Prompt3D  # noqa: E402
from medviewer.ai.engine import Engine  # noqa: E402
from medviewer.ai.errors import CheckpointError, UnsupportedPromptError  # noqa: E402
from medviewer.ai.registry import ModelRegistry  # noqa: E402
from medviewer.ai.resample import Grid, oriented_direction, resample  # noqa: E402
from medviewer.demo import make_demo_case  # noqa: E402
from medviewer.model.geometry import Geometry  # noqa: E402

TIMEOUT = 120.0
RAS_LETTERS = {"R": np.array([-1.0, 0, 0]), "A": np.array([0, -1.0, 0]), "S": np.array([0, 0, 1.0])}


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry(user_dirs=[], entry_points=[])


@pytest.fixture(scope="module")
def modules(registry):
    plugin_class = registry.model_class("sam_med3d")
    plugin = sys.modules[plugin_class.__module__]
    network = sys.modules[plugin_class.__module__.rsplit(".", 1)[0] + ".network"]
    return plugin, network


def small_config(network):
    return network.Sam3DConfig(
        embed_dim=48,
        depth=2,
        num_heads=4,
        global_attn_indexes=(1,),
        prompt_dim=48,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )


@pytest.fixture(scope="module")
def small_checkpoint(modules, tmp_path_factory):
    _, network = modules
    torch.manual_seed(0)
    model = network.Sam3D(small_config(network))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("sam_med3d") / "small_sam_med3d.pth"
    torch.save(
        {"model_state_dict": model.state_dict(), "optimizer_state_dict": {"step": torch.zeros(1)}, "epoch": 3}, path
    )
    return path


@pytest.fixture()
def model(registry, small_checkpoint):
    instance = registry.create("sam_med3d")
    instance.load(small_checkpoint, "cpu")
    return instance


class Recorder:
    """Wraps the network's decode: records inputs; optionally replaces the output logits."""

    def __init__(self, network, logits=None):
        self.network = network
        self.real = network.decode
        self.logits = logits
        self.calls = []
        network.decode = self

    def __call__(self, embedding, coords, labels, mask_input):
        low_res, iou = self.real(embedding, coords, labels, mask_input)
        if self.logits is not None:
            low_res = self.logits.clone()
        self.calls.append(
            {
                "coords": coords.clone(),
                "labels": labels.clone(),
                "mask": None if mask_input is None else mask_input.clone(),
                "out": low_res.clone(),
            }
        )
        return low_res, iou


# -- checkpoint layout --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_checkpoint(modules, tmp_path_factory):
    _, network = modules
    model = network.Sam3D()
    path = tmp_path_factory.mktemp("sam_med3d_full") / "sam_med3d_turbo_random.pth"
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": {}, "epoch": 1}, path)
    return model, path


def test_full_size_layout_matches_the_release(full_checkpoint, registry, modules):
    plugin, network = modules
    model, path = full_checkpoint
    state = model.state_dict()
    assert len(state) == 324
    parameters = network.count_parameters(model)
    assert round(parameters / 1e6, 1) == 100.5, parameters
    assert tuple(state["image_encoder.pos_embed"].shape) == (1, 8, 8, 8, 768)
    assert tuple(state["image_encoder.patch_embed.proj.weight"].shape) == (768, 1, 16, 16, 16)
    windowed = [i for i in range(12) if state[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape == (27, 64)]
    assert windowed == [0, 1, 3, 4, 6, 7, 9, 10]  # global attention at 2, 5, 8, 11: 2 * 8 - 1 = 15 rows
    assert state["image_encoder.blocks.2.attn.rel_pos_w"].shape == (15, 64)
    assert state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape == (3, 128)
    assert not any(k.startswith("prompt_encoder.point_embeddings.2") for k in state)  # no box corners
    assert state["mask_decoder.mask_tokens.weight"].shape == (4, 384)
    assert plugin.config_from_state_dict(state) == network.Sam3DConfig()
    loaded = registry.create("sam_med3d")
    loaded.load(path, "cpu")  # strict: every key and shape
    assert loaded.network.config == network.Sam3DConfig()
    assert torch.equal(loaded.network.image_encoder.pos_embed, model.image_encoder.pos_embed)


def test_other_checkpoints_are_refused_readably(registry, tmp_path, modules):
    _, network = modules
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}}, foreign)
    with pytest.raises(CheckpointError, match="missing keys"):
        registry.create("sam_med3d").load(foreign, "cpu")
    small = network.Sam3D(small_config(network)).state_dict()
    small["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    broken = tmp_path / "broken.pth"
    torch.save({"model_state_dict": small}, broken)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        registry.create("sam_med3d").load(broken, "cpu")


# -- the reference's quirks --------------------------------------------------------------------------
def test_dense_positional_encoding_swaps_the_first_two_axes(model):
    encoder = model.network.prompt_encoder
    dense = encoder.dense_pe()[0]  # (C, 8, 8, 8)
    encode = encoder.pe_layer.encode
    for a, b, c in [(0, 5, 2), (7, 1, 3), (2, 2, 6)]:
        expected = encode(torch.tensor([(b + 0.5) / 8, (a + 0.5) / 8, (c + 0.5) / 8]))
        assert torch.allclose(dense[:, a, b, c], expected, atol=1e-6)
    # ...while a click is encoded in the array's own order, shifted by half a voxel, over 128
    coords = torch.tensor([[[10.0, 70.0, 3.0]]])
    sparse = encoder.embed_points(coords, torch.tensor([[1.0]]))
    click = encode(torch.tensor([10.5, 70.5, 3.5]) / 128) + encoder.point_embeddings[1].weight[0]
    assert torch.allclose(sparse[0, 0], click, atol=1e-6)
    assert torch.allclose(sparse[0, 1], encoder.not_a_point_embed.weight[0])  # the padding point
    features = encoder.pe_layer.positional_encoding_gaussian_matrix.shape[1]
    projected = encode(torch.tensor([0.3, 0.6, 0.9]))
    assert torch.allclose(projected[:features], projected[2 * features :])  # [sin, cos, sin]


def test_windowed_blocks_attend_over_the_zero_padding(model):
    """The 8^3 tokens are padded to the 14^3 window after norm1; all 2744 positions are keys."""
    block = model.network.image_encoder.blocks[0]
    assert block.window == 14
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in block.named_parameters():
            if "rel_pos" in name:
                parameter.normal_(0, 0.2)
        x = torch.randn(1, 8, 8, 8, block.norm1.normalized_shape[0])
        out = block(x)
        attn = block.attn
        normed = torch.nn.functional.pad(block.norm1(x), (0, 0, 0, 6, 0, 6, 0, 6))  # (1, 14, 14, 14, C)
        n, heads = 14**3, attn.num_heads
        qkv = attn.qkv(normed).reshape(n, 3, heads, -1).permute(1, 2, 0, 3)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (heads, n, d)
        logits = (q * attn.scale) @ k.transpose(-1, -2)
        grid = torch.stack(torch.meshgrid(*[torch.arange(14)] * 3, indexing="ij"), -1).reshape(n, 3)
        for axis, table in enumerate((attn.rel_pos_d, attn.rel_pos_h, attn.rel_pos_w)):
            offsets = grid[:, None, axis] - grid[None, :, axis] + 13  # (n, n)
            per_query = torch.einsum("hqd,qkd->hqk", q, table[offsets.reshape(-1)].reshape(n, n, -1))
            logits = logits + per_query
        mixed = (logits.softmax(-1) @ v).permute(1, 0, 2).reshape(14, 14, 14, -1)
        expected = x + attn.proj(mixed[:8, :8, :8])[None]
        expected = expected + block.mlp(block.norm2(expected))
        assert torch.allclose(out, expected, atol=1e-4)
        # attending to the 512 real tokens only would give something else
        real = (grid < 8).all(dim=1)
        restricted = (logits[:, real][:, :, real].softmax(-1) @ v[:, real]).permute(1, 0, 2).reshape(8, 8, 8, -1)
        assert not torch.allclose(restricted, mixed[:8, :8, :8], atol=1e-3)


def test_first_click_gets_a_zero_mask_then_each_click_reuses_the_previous_logits(model):
    volume, _, _ = make_demo_case(shape=(24, 48, 48), spacing=(4.0, 4.0, 6.0))
    recorder = Recorder(model.network)
    first = model.predict_3d(
        volume.array, Prompt3D(points=((24, 24, 12),), labels=(1,)), geometry=volume.geometry, modality="CT"
    )
    call = recorder.calls[0]
    assert call["mask"] is not None and call["mask"].shape == (1, 1, 32, 32, 32) and not call["mask"].any()
    assert call["labels"].dtype == torch.float32 and call["labels"].tolist() == [[1.0]]
    assert call["coords"].tolist() == [[[64.0, 64.0, 64.0]]]
    assert first.mask.shape == volume.shape and first.mask.dtype == bool
    assert first.details["low_res_logits"].shape == (32, 32, 32)
    assert model.stats["encodes"] == 1
    # the next click alone, with the previous logits; the crop is not encoded again
    second = model.predict_3d(
        volume.array,
        Prompt3D(points=((24, 24, 12), (30, 24, 12)), labels=(1, 0)),
        geometry=volume.geometry,
        modality="CT",
    )
    assert len(recorder.calls) == 2 and model.stats["encodes"] == 1
    call = recorder.calls[1]
    assert call["labels"].tolist() == [[0.0]]
    assert call["coords"].tolist() == [[[48.0, 64.0, 64.0]]]  # 6 voxels x 4 mm toward patient left = -16 crop voxels
    assert torch.equal(call["mask"], recorder.calls[0]["out"])
    assert np.array_equal(second.details["clicks"][0][0], (24.0, 24.0, 12.0))
    # asking again for the same clicks does nothing
    assert (
        model.predict_3d(
            volume.array,
            Prompt3D(points=((24, 24, 12), (30, 24, 12)), labels=(1, 0)),
            geometry=volume.geometry,
            modality="CT",
        )
        is second
    )
    assert len(recorder.calls) == 2


def test_explicit_previous_result_all_clicks_mode_and_restarts(registry, small_checkpoint):
    volume, _, _ = make_demo_case(shape=(24, 48, 48), spacing=(4.0, 4.0, 6.0))
    geometry = volume.geometry
    one = registry.create("sam_med3d")
    one.load(small_checkpoint, "cpu")
    first = one.predict_3d(volume.array, Prompt3D(points=((24, 24, 12),), labels=(1,)), geometry=geometry)
    other = registry.create("sam_med3d")
    other.load(small_checkpoint, "cpu")
    recorder = Recorder(other.network)
    clicks = Prompt3D(points=((24, 24, 12), (20, 24, 12), (24, 30, 12)), labels=(1, 1, 0))
    continued = other.predict_3d(volume.array, clicks, geometry=geometry, previous=first.details)
    assert len(recorder.calls) == 2  # only the two new clicks
    assert np.allclose(recorder.calls[0]["mask"][0, 0].numpy(), first.details["low_res_logits"])
    assert continued.details["crop_grid"] == first.details["crop_grid"]
    together = other.predict_3d(volume.array, clicks, geometry=geometry, point_mode="all")
    assert recorder.calls[-1]["coords"].shape == (1, 3, 3) and not recorder.calls[-1]["mask"].any()
    assert together.mask.shape == volume.shape
    encodes = other.stats["encodes"]
    # removing a click restarts from the first click, reusing the crop's embedding
    other.predict_3d(volume.array, Prompt3D(points=((24, 24, 12),), labels=(1,)), geometry=geometry)
    assert other.stats["encodes"] == encodes
    # another first click means another crop
    other.predict_3d(volume.array, Prompt3D(points=((10, 24, 12),), labels=(1,)), geometry=geometry)
    assert other.stats["encodes"] == encodes + 1


def test_prompts_that_cannot_work_are_refused(model):
    volume = np.zeros((8, 8, 8), np.int16)
    with pytest.raises(UnsupportedPromptError, match="positive click"):
        model.predict_3d(volume, Prompt3D(points=((1, 1, 1),), labels=(0,)))
    with pytest.raises(UnsupportedPromptError, match="3D volume"):
        model.predict_3d(np.zeros((8, 8)), Prompt3D(points=((1, 1, 0),), labels=(1,)))
    recorder = Recorder(model.network)
    model.predict_3d(volume, Prompt3D(box=(2, 2, 2, 6, 4, 6)), spacing=(1.5, 1.5, 1.5))
    assert recorder.calls[0]["coords"].tolist() == [[[64.0, 64.0, 64.0]]] and recorder.calls[0]["labels"].tolist() == [
        [1.0]
    ]


# -- geometry: crop orientation, click mapping, result on the volume grid ----------------------------
DIRECTIONS = {
    "LPS": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "RAS-stored": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "coronal": (1, 0, 0, 0, 0, 1, 0, -1, 0),  # index axes: x -> L, y -> I, z -> P
}


def make_geometry(direction) -> Geometry:
    return Geometry((30, 40, 50), spacing=(2.0, 1.5, 3.0), origin=(-40.0, 12.0, 100.0), direction=direction)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("letter", ["R", "A", "S"])
def test_the_crop_is_ras_ordered_at_1_5_mm_and_centred_on_the_click(modules, name, letter):
    plugin, _ = modules
    geometry = make_geometry(DIRECTIONS[name])
    grid = Grid.of(geometry)
    click = np.array([25.0, 20.0, 15.0])  # (x, y, z) voxel index
    target = geometry.index_to_physical(click) + 15.0 * RAS_LETTERS[letter]  # 15 mm toward R / A / S
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), -1).reshape(-1, 3)
    distance = np.linalg.norm(geometry.index_to_physical(zyx[:, ::-1]) - target, axis=1).reshape(geometry.shape)
    volume = np.where(distance < 4.0, 1000.0, 100.0).astype(np.float32)
    crop = plugin.crop_grid_for(grid, click)
    assert crop.size == (128, 128, 128) and crop.spacing == (1.5, 1.5, 1.5)
    assert np.allclose(crop.physical_to_index(geometry.index_to_physical(click)), 64.0)
    tensor = plugin.prepare_crop(volume, grid, crop)  # (i, j, k)
    bright = np.argwhere(tensor > tensor.max() / 2).mean(axis=0)
    expected = np.full(3, 64.0)
    expected["RAS".index(letter)] += 10.0  # 15 mm / 1.5 mm along the crop axis pointing to that letter
    assert np.allclose(bright, expected, atol=1.0), (bright, expected)
    coords, inside = plugin.crop_indices([click, click + (1, 0, 0)], grid, crop)
    assert coords[0].tolist() == [64, 64, 64] and inside.all()


def test_z_normalisation_uses_voxels_above_zero_and_ct_is_clamped(modules):
    plugin, _ = modules
    crop = np.array([-3000.0, 0.0, 10.0, 20.0, 30.0], dtype=np.float32)
    normalised = plugin.z_normalise(crop)
    values = np.array([10.0, 20.0, 30.0])
    assert np.allclose(normalised, (crop - values.mean()) / values.std(ddof=1))
    geometry = make_geometry(DIRECTIONS["LPS"])
    grid = Grid.of(geometry)
    volume = np.full(geometry.shape, 50.0, np.float32)
    volume[:, :, :10] = -3000.0
    volume[:, :, 40:] = 3000.0
    crop_grid = plugin.crop_grid_for(grid, (25, 20, 15))
    sampled = resample(volume, grid, crop_grid)  # [k, j, i], outside the scan = 0
    # CT is clamped to [-1000, 1000] at 1.5 mm before normalising (the training data were resampled,
    # then clamped); other modalities are not
    expected_ct = plugin.z_normalise(np.clip(sampled, -1000.0, 1000.0)).transpose(2, 1, 0)
    assert np.allclose(plugin.prepare_crop(volume, grid, crop_grid, "CT"), expected_ct)
    assert np.allclose(
        plugin.prepare_crop(volume, grid, crop_grid, "MR"), plugin.z_normalise(sampled).transpose(2, 1, 0)
    )


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_the_crop_mask_lands_on_the_volume_grid_where_the_model_put_it(model, modules, name):
    """A fake decoder answers with a block of the crop 24-48 mm toward the patient's right of the
    click: the mask on the volume grid must be there, for any voxel order of the volume."""
    geometry = make_geometry(DIRECTIONS[name])
    volume = np.full(geometry.shape, 100.0, np.float32)
    logits = torch.full((1, 1, 32, 32, 32), -20.0)
    logits[0, 0, 20:24, 14:18, 14:18] = 20.0  # low-res voxels of 6 mm: crop voxels 80..95 along R
    Recorder(model.network, logits)
    click = (25.0, 20.0, 15.0)
    prediction = model.predict_3d(volume, Prompt3D(points=(click,), labels=(1,)), geometry=geometry)
    mask = prediction.mask
    assert mask.shape == geometry.shape and mask.any()
    inside = np.argwhere(mask)[:, ::-1]  # (x, y, z) indices
    offsets = geometry.index_to_physical(inside) - geometry.index_to_physical(np.array(click))
    toward_right = offsets @ RAS_LETTERS["R"]
    assert 20.0 < toward_right.min() and toward_right.max() < 52.0, (toward_right.min(), toward_right.max())
    assert abs(np.mean(offsets @ RAS_LETTERS["A"])) < 3.0 and abs(np.mean(offsets @ RAS_LETTERS["S"])) < 3.0
    assert (
        prediction.details["crop_grid"].direction_matrix.tolist()
        == oriented_direction(geometry.direction, "RAS").tolist()
    )


def test_through_the_engine_with_the_volume_geometry(registry, small_checkpoint):
    volume, _, _ = make_demo_case(shape=(24, 48, 48), spacing=(4.0, 4.0, 6.0))
    with Engine(registry, device="cpu") as engine:
        engine.load_model("sam_med3d", checkpoint=small_checkpoint).get(TIMEOUT)
        job = engine.predict_3d("sam_med3d", volume, Prompt3D(points=((30, 20, 12),), labels=(1,)))
        prediction = job.get(TIMEOUT)
        assert prediction.mask.shape == volume.shape
        crop = prediction.details["crop_grid"]
        centre = crop.index_to_physical(np.array([64.0, 64.0, 64.0]))
        assert np.allclose(centre, volume.geometry.index_to_physical(np.array([30.0, 20.0, 12.0])))
        again = engine.predict_3d(
            "sam_med3d", volume, Prompt3D(points=((30, 20, 12), (28, 20, 12)), labels=(1, 1))
        ).get(TIMEOUT)
        live = engine.loaded_model("sam_med3d")
        assert live.stats == {"encodes": 1, "decodes": 2}
        assert again.details["clicks"][1] == ((28.0, 20.0, 12.0), 1)


@pytest.mark.slow
def test_full_size_random_model_end_to_end(full_checkpoint, registry):
    """The released architecture at full size (random weights): ~10 s to encode on a CPU."""
    _, path = full_checkpoint
    volume, _, _ = make_demo_case(shape=(24, 64, 64), spacing=(5.0, 5.0, 10.0))
    with Engine(registry, device="cpu") as engine:
        engine.load_model("sam_med3d", checkpoint=path).get(TIMEOUT)
        prediction = engine.predict_3d("sam_med3d", volume, Prompt3D(points=((32, 30, 12),), labels=(1,))).get(TIMEOUT)
    assert prediction.mask.shape == volume.shape
    assert math.isfinite(prediction.score)
    assert np.isfinite(prediction.details["low_res_logits"]).all()
