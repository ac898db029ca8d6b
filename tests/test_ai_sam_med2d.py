"""SAM-Med2D (sam-med2d_b.pth) as a medviewer plugin: our adapter ViT-B at 256 x 256.

- layout: the full-size network has the released checkpoint's 386 tensors and 271.2 M
  parameters, SAM ViT-B's keys and shapes at 256 px (pos_embed 16 x 16, relative positions
  27 x 64 in window blocks and 31 x 64 in the global blocks 2/5/8/11) plus six adapter
  tensors per block; a ``{'model': state_dict}`` file at full size loads, encodes and decodes;
- the block computes ``x + mlp(norm2(x)) + adapter(norm2(x))`` with the channel + spatial
  adapter, checked against a hand-written functional version;
- behaviour: the plugin gives the same results as the reference ``SammedPredictor`` /
  ``test.py`` pipeline written out below (normalise at native size, nearest resize to 256,
  per-axis prompt scaling, best of three masks, logits -> 256 -> native size, previous mask
  fed back as sigmoid probabilities);
- errors: plain SAM files, truncated files and pickles are refused readably.
"""

from __future__ import annotations

import importlib
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")
cv2 = pytest.importorskip("cv2")

from ai_checkpoint_fixtures import (  # noqa: E402
    TINY_SAM,
    TINY_SAM_MED2D,
    bundled_registry,
    install_fake_decoder,
    plugin_module,
    ramp,
    reference_uint8,
    sam_med2d_network,
    save_pickle_checkpoint,
    save_sam_checkpoint,
    save_sam_med2d_checkpoint,
    spy_prompt_encoder,
    synthetic_ct_slice,
    truncated_copy,
)

from medviewer.ai.api import Prompt2D  # noqa: E402
from medviewer.ai.engine import Engine  # noqa: E402
from medviewer.ai.errors import CheckpointError, ModelError  # noqa: E402
from medviewer.ai.sam_common import infer_sam_spec, parameter_count, state_dict_layout  # noqa: E402
from medviewer.model import Geometry, Volume, VolumeInfo  # noqa: E402

TIMEOUT = 120.0
WINDOW = (-160.0, 240.0)
ROWS, COLUMNS = 90, 150  # squashed to 256 x 256
OFFICIAL_KEYS, OFFICIAL_PARAMETERS = 386, 271_242_032  # models.md: 386 keys, 271.2 M parameters
ADAPTER_SHAPES = {
    "Adapter.norm.weight": (768,),
    "Adapter.norm.bias": (768,),
    "Adapter.channel.0.weight": (192, 768),
    "Adapter.channel.2.weight": (768, 192),
    "Adapter.spatial.0.weight": (768, 768, 3, 3),
    "Adapter.spatial.2.weight": (768, 768, 4, 4),
}


@pytest.fixture(scope="module")
def plugin():
    return plugin_module("sam_med2d")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_sam_med2d_checkpoint(tmp_path_factory.mktemp("med2d") / "sam-med2d_tiny.pth", TINY_SAM_MED2D, seed=5)


@pytest.fixture(scope="module")
def model(checkpoint):
    model = bundled_registry().create("sam_med2d")
    model.load(checkpoint, "cpu")
    return model


@pytest.fixture(scope="module")
def image():
    return synthetic_ct_slice(ROWS, COLUMNS, seed=8)


@pytest.fixture(scope="module")
def embedding(model, image):
    return model.encode(image, WINDOW)


# -- the reference pipeline (SammedPredictor + test.py) ------------------------------------------
class ReferencePredictor:
    """SAM-Med2D's ``SammedPredictor`` steps, on a network loaded from the same file."""

    def __init__(self, checkpoint, image_3c: np.ndarray, size: int = 256):
        self.network = sam_med2d_network(TINY_SAM_MED2D, seed=77)
        self.network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
        self.network.eval()
        self.size = size
        pixel_mean = self.network.pixel_mean.squeeze().numpy()
        pixel_std = self.network.pixel_std.squeeze().numpy()
        input_image = (image_3c - pixel_mean) / pixel_std
        self.original_size = input_image.shape[:2]
        resized = cv2.resize(input_image, (size, size), interpolation=cv2.INTER_NEAREST)  # A.Resize
        self.input = torch.from_numpy(resized.transpose(2, 0, 1))[None]  # ToTensorV2
        with torch.no_grad():
            self.features = self.network.image_encoder(self.input)

    def apply_coords(self, coords):
        old_h, old_w = self.original_size
        coords = np.array(coords, dtype=float)
        coords[..., 0] = coords[..., 0] * (self.size / old_w)
        coords[..., 1] = coords[..., 1] * (self.size / old_h)
        return coords

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None):
        points = boxes = masks = None
        if point_coords is not None:
            coords = torch.as_tensor(self.apply_coords(point_coords), dtype=torch.float)[None]
            points = (coords, torch.as_tensor(point_labels, dtype=torch.int)[None])
        if box is not None:
            boxes = torch.as_tensor(self.apply_coords(np.reshape(box, (-1, 2, 2))).reshape(-1, 4), dtype=torch.float)
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float)[None]
        with torch.no_grad():
            sparse, dense = self.network.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res, iou = self.network.mask_decoder(
                image_embeddings=self.features,
                image_pe=self.network.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            best_iou, best = torch.max(iou, dim=1)
            low_res = low_res[:, best]
            interpolate = partial(torch.nn.functional.interpolate, mode="bilinear", align_corners=False)
            masks = interpolate(interpolate(low_res, (self.size, self.size)), self.original_size)
        return (torch.sigmoid(masks) > 0.5)[0, 0].numpy(), float(best_iou), low_res


@pytest.fixture(scope="module")
def reference(checkpoint, image):
    return ReferencePredictor(checkpoint, np.repeat(reference_uint8(image, WINDOW)[:, :, None], 3, axis=-1))


# -- layout --------------------------------------------------------------------------------------
def sam_vit_b_at_256_layout() -> dict[str, tuple[int, ...]]:
    """segment-anything's classes configured as SAM-Med2D's build_sam.py does (image_size=256),
    without the adapters: every non-adapter tensor of sam-med2d_b.pth must match this."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    with torch.device("meta"):
        network = Sam(
            image_encoder=ImageEncoderViT(
                depth=12,
                embed_dim=768,
                img_size=256,
                mlp_ratio=4,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=12,
                patch_size=16,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=[2, 5, 8, 11],
                window_size=14,
                out_chans=256,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                transformer_dim=256,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return state_dict_layout(network)


def test_full_size_layout_matches_the_released_checkpoint(plugin):
    with torch.device("meta"):
        network = plugin.build_network()
    layout = state_dict_layout(network)
    assert len(layout) == OFFICIAL_KEYS
    assert parameter_count(network.state_dict()) == OFFICIAL_PARAMETERS  # 271.2 M
    adapter_keys = {key for key in layout if ".Adapter." in key}
    assert len(adapter_keys) == 12 * len(ADAPTER_SHAPES)
    for block in range(12):
        for suffix, shape in ADAPTER_SHAPES.items():
            assert layout[f"image_encoder.blocks.{block}.{suffix}"] == shape
        rows = 31 if block in (2, 5, 8, 11) else 27
        assert layout[f"image_encoder.blocks.{block}.attn.rel_pos_h"] == (rows, 64)
        assert layout[f"image_encoder.blocks.{block}.attn.rel_pos_w"] == (rows, 64)
    assert layout["image_encoder.pos_embed"] == (1, 16, 16, 768)
    assert layout["image_encoder.patch_embed.proj.weight"] == (768, 3, 16, 16)
    assert {k: v for k, v in layout.items() if k not in adapter_keys} == sam_vit_b_at_256_layout()
    spec = infer_sam_spec(network.state_dict())
    assert spec == plugin.SAM_MED2D_B and spec.variant == "vit_b" and spec.adapter


@pytest.mark.slow
def test_full_size_file_loads_encodes_and_decodes(tmp_path, plugin):
    """The one full-size forward in the suite: the official container at 271 M parameters
    ({'model': ...}, 1.1 GB), read through the registry's plugin, encode 256 x 256, decode."""
    with torch.device("meta"):
        layout = state_dict_layout(plugin.build_network())
    state = {key: torch.full(shape, 0.01) for key, shape in layout.items()}
    path = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": state}, path)
    del state
    model = bundled_registry().create("sam_med2d")
    model.load(path, "cpu")
    path.unlink()
    assert model.spec == plugin.SAM_MED2D_B
    image = synthetic_ct_slice(300, 200)
    embedding = model.encode(image, WINDOW)
    assert tuple(embedding.features.shape) == (1, 256, 16, 16)
    prediction = model.decode(embedding, Prompt2D(box=(40, 60, 150, 220)))
    assert prediction.mask.shape == (300, 200) and prediction.low_res_logits.shape == (64, 64)
    assert np.isfinite(prediction.probabilities).all()


# -- the adapter block ---------------------------------------------------------------------------
def functional_adapter(adapter, y: torch.Tensor) -> torch.Tensor:
    """norm(y + relu(convT(relu(conv(y * sigmoid(W2 relu(W1 avgpool(y)))))))), by hand."""
    F = torch.nn.functional
    maps = y.permute(0, 3, 1, 2)
    pooled = maps.mean(dim=(2, 3))
    gate = torch.sigmoid(F.linear(F.relu(F.linear(pooled, adapter.channel[0].weight)), adapter.channel[2].weight))
    down = F.relu(F.conv2d(maps * gate[:, :, None, None], adapter.spatial[0].weight, stride=2, padding=1))
    up = F.relu(F.conv_transpose2d(down, adapter.spatial[2].weight, stride=2, padding=1))
    out = (maps + up).permute(0, 2, 3, 1)
    return F.layer_norm(out, (y.shape[-1],), adapter.norm.weight, adapter.norm.bias, eps=1e-5)


@pytest.mark.parametrize("window_size", [0, 3])  # global attention, and windows with padding
def test_block_adds_the_adapter_in_parallel_with_the_mlp(plugin, window_size, monkeypatch):
    from segment_anything.modeling.image_encoder import Block

    adapter_vit = importlib.import_module(f"{plugin.__package__}.adapter_vit")
    torch.manual_seed(0)
    block = adapter_vit.AdapterBlock(
        8,
        num_heads=2,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window_size,
        input_size=(4, 4),
    ).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn(parameter.shape) * 0.3)
    x = torch.randn(1, 4, 4, 8)
    with torch.no_grad():
        attention = x + _attention_only(block, x)
        normed = block.norm2(attention)
        expected = attention + block.mlp(normed) + functional_adapter(block.Adapter, normed)
        assert torch.allclose(block(x), expected, atol=1e-5)
    # With the adapter silenced the block is exactly segment-anything's Block.
    monkeypatch.setattr(block.Adapter, "forward", lambda y: torch.zeros_like(y))
    with torch.no_grad():
        assert torch.allclose(block(x), Block.forward(block, x), atol=1e-6)


def _attention_only(block, x):
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    y = block.norm1(x)
    if block.window_size > 0:
        y, padded = window_partition(y, block.window_size)
    y = block.attn(y)
    if block.window_size > 0:
        y = window_unpartition(y, block.window_size, padded, (x.shape[1], x.shape[2]))
    return y


# -- equality with the reference pipeline --------------------------------------------------------
def test_preprocessing_normalises_at_native_size_then_nearest_resizes(plugin, embedding, reference, image):
    network_input = plugin.preprocess(image, WINDOW)
    assert network_input.dtype == torch.float32 and tuple(network_input.shape) == (1, 3, 256, 256)
    assert torch.equal(network_input, reference.input)
    assert torch.equal(embedding.features, reference.features)
    assert embedding.resized_size == embedding.input_size == (256, 256) and embedding.padding == (0, 0)
    # Nearest neighbour picks source pixel floor(j * 150 / 256) for column j, floor(i * 90 / 256) for row i.
    ramp_image = (np.arange(ROWS)[:, None] * 1000 + np.arange(COLUMNS)[None, :]).astype(np.float64)
    resized = cv2.resize(ramp_image, (256, 256), interpolation=cv2.INTER_NEAREST)
    rows = np.floor(np.arange(256) * ROWS / 256).astype(int)
    columns = np.floor(np.arange(256) * COLUMNS / 256).astype(int)
    assert np.array_equal(resized, ramp_image[np.ix_(rows, columns)])
    values = np.arange(COLUMNS, dtype=np.uint8)[None, :].repeat(ROWS, axis=0)  # pixel value = column
    expected = (values[0, columns].astype(np.float32) - np.float32(123.675)) / np.float32(58.395)
    assert np.array_equal(plugin.normalise_and_resize(values)[0, :, 0], expected)


PROMPTS = [
    pytest.param(Prompt2D(points=((40, 30),), labels=(1,)), id="one click"),
    pytest.param(Prompt2D(points=((40, 30), (100, 60), (75, 45)), labels=(1, 0, 1)), id="three clicks"),
    pytest.param(Prompt2D(box=(20, 10, 120, 70)), id="box"),
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_masks_equal_the_reference(model, embedding, reference, prompt):
    prediction = model.decode(embedding, prompt)
    mask, score, low_res = reference.predict(
        point_coords=np.array(prompt.points) if prompt.points else None,
        point_labels=np.array(prompt.labels) if prompt.points else None,
        box=np.array(prompt.box) if prompt.box is not None else None,
    )
    assert prediction.mask.shape == (ROWS, COLUMNS)
    assert np.array_equal(prediction.mask, mask)
    assert prediction.score == pytest.approx(score)
    assert np.array_equal(prediction.low_res_logits, low_res[0, 0].numpy())


def test_iterative_refinement_feeds_back_sigmoid_probabilities(model, embedding, reference, monkeypatch):
    first = model.decode(embedding, Prompt2D(points=((40, 30),), labels=(1,)))
    assert first.low_res_logits.shape == (64, 64)
    clicks = Prompt2D(points=((40, 30), (110, 20)), labels=(1, 0))
    seen = []
    spy_prompt_encoder(monkeypatch, model.network, seen)
    refined = model.decode(embedding, clicks, first.low_res_logits)
    assert torch.allclose(seen[0]["masks"][0, 0], torch.sigmoid(torch.from_numpy(first.low_res_logits)))
    _, _, first_low_res = reference.predict(np.array([(40, 30)]), np.array([1]))
    mask, score, low_res = reference.predict(
        np.array(clicks.points), np.array(clicks.labels), mask_input=torch.sigmoid(first_low_res[0]).numpy()
    )
    assert np.array_equal(refined.mask, mask) and np.array_equal(refined.low_res_logits, low_res[0, 0].numpy())
    with pytest.raises(ModelError, match="64 x 64 low-resolution logits"):
        model.decode(embedding, clicks, np.zeros((256, 256), np.float32))


# -- pre/post-processing with known values -------------------------------------------------------
def test_prompts_are_scaled_per_axis(model, embedding, monkeypatch):
    seen = []
    spy_prompt_encoder(monkeypatch, model.network, seen)
    model.decode(embedding, Prompt2D(box=(15, 9, 120, 80), points=((30, 60),), labels=(1,)))
    coords, labels = seen[0]["points"]
    assert np.allclose(coords.numpy(), [[[30 * 256 / 150, 60 * 256 / 90]]]) and labels.tolist() == [[1]]
    assert np.allclose(seen[0]["boxes"].numpy(), [[15 * 256 / 150, 9 * 256 / 90, 120 * 256 / 150, 80 * 256 / 90]])


@pytest.mark.parametrize(
    ("axis", "boundary", "expected_last"),
    [("columns", 32.0, 74), ("rows", 64 * 30 / 90, 29)],  # 64 x 64 logits cover the squashed slice
)
def test_known_logits_map_back_to_native_pixels(model, embedding, monkeypatch, axis, boundary, expected_last):
    calls = []
    iou = torch.tensor([[0.0, 0.3, 0.7, 0.1]])
    install_fake_decoder(monkeypatch, model.network, ramp(64, boundary, axis), iou, calls)
    prediction = model.decode(embedding, Prompt2D(box=(0, 0, 9, 9)))
    assert calls == [True]  # SAM-Med2D always asks for three candidates, even for a box
    assert prediction.score == pytest.approx(0.7)
    expected = np.zeros((ROWS, COLUMNS), bool)
    if axis == "columns":
        expected[:, : expected_last + 1] = True
    else:
        expected[: expected_last + 1, :] = True
    assert np.array_equal(prediction.mask, expected)


def test_highest_predicted_iou_wins(model, embedding, monkeypatch):
    calls = []
    low_res = torch.stack([torch.full((64, 64), value) for value in (9.0, -3.0, -2.0, 4.0)])[None]
    install_fake_decoder(monkeypatch, model.network, low_res, torch.tensor([[0.99, 0.1, 0.2, 0.6]]), calls)
    prediction = model.decode(embedding, Prompt2D(points=((3, 3), (9, 9)), labels=(1, 1)))
    assert calls == [True] and prediction.score == pytest.approx(0.6) and prediction.mask.all()


# -- checkpoints ---------------------------------------------------------------------------------
def test_a_plain_sam_checkpoint_is_refused_naming_the_adapter_keys(tmp_path):
    model = bundled_registry().create("sam_med2d")
    sam = save_sam_checkpoint(tmp_path / "sam_vit_tiny.pth", TINY_SAM)
    with pytest.raises(CheckpointError) as error:
        model.load(sam, "cpu")
    text = str(error.value)
    assert "does not fit the SAM-Med2D architecture" in text and "sam-med2d_b.pth" in text
    assert "missing keys (image_encoder.blocks.0.Adapter.channel.0.weight" in text
    assert not model.loaded


def test_truncated_and_pickled_files_are_refused(tmp_path, checkpoint):
    model = bundled_registry().create("sam_med2d")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        model.load(truncated_copy(checkpoint, tmp_path / "cut.pth", keep=0.3), "cpu")
    with pytest.raises(CheckpointError, match="refused to load"):
        model.load(save_pickle_checkpoint(tmp_path / "pickle.pth"), "cpu")


def test_engine_path_with_iterative_clicks(checkpoint, image, reference):
    volume = Volume(image[None], Geometry((1, ROWS, COLUMNS)), VolumeInfo(modality="CT"))
    with Engine(bundled_registry(), device="cpu") as engine:
        engine.load_model("sam_med2d", checkpoint=checkpoint).get(TIMEOUT)
        first = engine.segment("sam_med2d", volume, 0, 0, Prompt2D(box=(20, 10, 120, 70)), window=WINDOW).get(TIMEOUT)
        clicks = Prompt2D(box=(20, 10, 120, 70), points=((60, 40),), labels=(0,))
        second = engine.segment(
            "sam_med2d", volume, 0, 0, clicks, window=WINDOW, previous_low_res_mask=first.low_res_logits
        ).get(TIMEOUT)
        assert engine.stats["encodes"] == 1 and engine.stats["decodes"] == 2
    expected, _, _ = reference.predict(box=np.array((20, 10, 120, 70)))
    assert np.array_equal(first.mask, expected)
    assert second.mask.shape == (ROWS, COLUMNS)
