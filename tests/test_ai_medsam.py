"""MedSAM (medsam_vit_b.pth: SAM ViT-B fine-tuned for boxes) as a medviewer plugin.

The reference is MedSAM's own inference script (bowang-lab/MedSAM ``MedSAM_Inference.py``),
written out below step by step and run on segment-anything's ``Sam`` with the same random
weights: 3-channel 8-bit image -> skimage cubic resize to 1024 x 1024 (aspect not kept) ->
uint8 -> min-max to [0, 1] -> image encoder; box / [W, H, W, H] * 1024; single mask; low-res
logits -> sigmoid -> bilinear to H x W -> > 0.5. The plugin must give identical results.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")
skimage_transform = pytest.importorskip("skimage.transform")

from ai_checkpoint_fixtures import (  # noqa: E402
    TINY_SAM,
    bundled_registry,
    install_fake_decoder,
    load_reference_weights,
    plugin_module,
    ramp,
    reference_sam,
    reference_uint8,
    save_medsam_checkpoint,
    save_pickle_checkpoint,
    save_sam_med2d_checkpoint,
    spy_prompt_encoder,
    synthetic_ct_slice,
    truncated_copy,
)

from medviewer.ai.api import Prompt2D  # noqa: E402
from medviewer.ai.engine import Engine  # noqa: E402
from medviewer.ai.errors import CheckpointError, UnsupportedPromptError  # noqa: E402
from medviewer.ai.sam_common import OFFICIAL_SAM_SPECS, parameter_count, state_dict_layout  # noqa: E402
from medviewer.model import Geometry, Volume, VolumeInfo  # noqa: E402

TIMEOUT = 120.0
WINDOW = (-160.0, 240.0)
ROWS, COLUMNS = 90, 150  # squashed to 1024 x 1024: 11.38 input rows but 6.83 input columns per pixel
BOXES = [(20, 10, 120, 70), (60, 25, 100, 52), (0, 0, 149, 89)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_medsam_checkpoint(tmp_path_factory.mktemp("medsam") / "medsam_tiny.pth", TINY_SAM, seed=7)


@pytest.fixture(scope="module")
def model(checkpoint):
    model = bundled_registry().create("medsam")
    model.load(checkpoint, "cpu")
    return model


@pytest.fixture(scope="module")
def image():
    return synthetic_ct_slice(ROWS, COLUMNS, seed=4)


@pytest.fixture(scope="module")
def embedding(model, image):
    return model.encode(image, WINDOW)


# -- the reference pipeline (MedSAM_Inference.py) ------------------------------------------------
@pytest.fixture(scope="module")
def reference(checkpoint, image):
    network = load_reference_weights(reference_sam(TINY_SAM, seed=123), checkpoint)
    img_3c = np.repeat(reference_uint8(image, WINDOW)[:, :, None], 3, axis=-1)
    img_1024 = skimage_transform.resize(
        img_3c, (1024, 1024), order=3, preserve_range=True, anti_aliasing=True
    ).astype(np.uint8)
    raw_1024 = img_1024
    img_1024 = (img_1024 - img_1024.min()) / np.clip(img_1024.max() - img_1024.min(), a_min=1e-8, a_max=None)
    tensor = torch.tensor(img_1024).float().permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        features = network.image_encoder(tensor)
    return {"network": network, "raw_1024": raw_1024, "img_1024": img_1024, "features": features}


def reference_segment(reference, box, height, width):
    network = reference["network"]
    box_1024 = np.array([box]) / np.array([width, height, width, height]) * 1024
    box_torch = torch.as_tensor(box_1024, dtype=torch.float)[:, None, :]
    with torch.no_grad():
        sparse, dense = network.prompt_encoder(points=None, boxes=box_torch, masks=None)
        low_res_logits, _ = network.mask_decoder(
            image_embeddings=reference["features"],
            image_pe=network.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        low_res_pred = torch.nn.functional.interpolate(
            torch.sigmoid(low_res_logits), size=(height, width), mode="bilinear", align_corners=False
        )
    return low_res_pred.squeeze().numpy() > 0.5, low_res_logits[0, 0].numpy()


# -- layout --------------------------------------------------------------------------------------
def test_full_size_layout_is_sam_vit_b():
    """medsam_vit_b.pth is a flat SAM ViT-B state dict: 314 tensors, 93.7 M parameters."""
    from segment_anything import sam_model_registry

    model = bundled_registry().create("medsam")
    with torch.device("meta"):
        ours = model.build(OFFICIAL_SAM_SPECS["vit_b"])
        reference = sam_model_registry["vit_b"]()
    layout = state_dict_layout(ours)
    assert layout == state_dict_layout(reference)
    assert len(layout) == 314 and parameter_count(ours.state_dict()) == 93_735_728
    assert layout["image_encoder.pos_embed"] == (1, 64, 64, 768)


# -- equality with the reference ------------------------------------------------------------------
def test_preprocessing_equals_medsam_inference(embedding, reference, image):
    plugin = plugin_module("medsam")
    network_input = plugin.preprocess(image, WINDOW)
    expected = torch.tensor(reference["img_1024"]).float().permute(2, 0, 1).unsqueeze(0)
    assert torch.equal(network_input, expected)
    # One grey channel resized gives exactly each channel of skimage's RGB resize.
    grey = plugin.resize_medsam(reference_uint8(image, WINDOW))
    assert grey.shape == (1024, 1024) and grey.dtype == np.uint8
    assert all(np.array_equal(grey, reference["raw_1024"][:, :, channel]) for channel in range(3))
    assert embedding.resized_size == embedding.input_size == (1024, 1024) and embedding.padding == (0, 0)
    assert embedding.extra["scale_xy"] == (1024 / COLUMNS, 1024 / ROWS)
    assert torch.equal(embedding.features, reference["features"])


@pytest.mark.parametrize("box", BOXES)
def test_masks_equal_medsam_inference(model, embedding, reference, box):
    prediction = model.decode(embedding, Prompt2D(box=box))
    expected_mask, expected_logits = reference_segment(reference, box, ROWS, COLUMNS)
    assert prediction.mask.shape == (ROWS, COLUMNS)
    assert np.array_equal(prediction.mask, expected_mask)
    assert np.array_equal(prediction.low_res_logits, expected_logits)
    assert prediction.low_res_logits.shape == (256, 256) and prediction.score is not None


def test_box_is_scaled_per_axis(model, embedding, monkeypatch):
    seen = []
    spy_prompt_encoder(monkeypatch, model.network, seen)
    model.decode(embedding, Prompt2D(box=(15, 9, 120, 80)))
    assert seen[0]["points"] is None and seen[0]["masks"] is None
    expected = [15 / 150 * 1024, 9 / 90 * 1024, 120 / 150 * 1024, 80 / 90 * 1024]
    assert np.allclose(seen[0]["boxes"].reshape(-1).numpy(), expected)


@pytest.mark.parametrize(
    ("axis", "boundary", "expected_last"),
    [("columns", 128.0, 74), ("rows", 256 * 30 / 90, 29)],  # half the columns, a third of the rows
)
def test_known_logits_map_back_without_aspect_padding(model, embedding, monkeypatch, axis, boundary, expected_last):
    calls = []
    install_fake_decoder(monkeypatch, model.network, ramp(256, boundary, axis), torch.tensor([[0.8, 0, 0, 0]]), calls)
    prediction = model.decode(embedding, Prompt2D(box=(0, 0, 5, 5)))
    assert calls == [False]  # MedSAM: one mask
    expected = np.zeros((ROWS, COLUMNS), bool)
    if axis == "columns":
        expected[:, : expected_last + 1] = True
    else:
        expected[: expected_last + 1, :] = True
    assert np.array_equal(prediction.mask, expected)
    assert prediction.score == pytest.approx(0.8)


def test_box_only(model, embedding):
    with pytest.raises(UnsupportedPromptError, match="does not accept points"):
        model.decode(embedding, Prompt2D(points=((3, 4),), labels=(1,)))
    with pytest.raises(UnsupportedPromptError, match="draw a new box"):
        model.decode(embedding, Prompt2D(box=BOXES[0]), np.zeros((256, 256), np.float32))
    assert not model.info.supports("mask") and model.info.recommended_prompts == ("box",)


# -- checkpoints -----------------------------------------------------------------------------------
def test_training_checkpoint_with_model_key_loads(tmp_path, checkpoint):
    """MedSAM's training script saves {'model': ..., 'optimizer': ..., 'epoch': ...}."""
    state = torch.load(checkpoint, weights_only=True)
    nested = tmp_path / "medsam_model_best.pth"
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3}, nested)
    model = bundled_registry().create("medsam")
    model.load(nested, "cpu")
    assert model.loaded and model.spec == TINY_SAM


def test_bad_checkpoints_are_refused(tmp_path, checkpoint):
    model = bundled_registry().create("medsam")
    adapter_keys = r"MedSAM architecture.*unexpected keys \(image_encoder\.blocks\.0\.Adapter"
    with pytest.raises(CheckpointError, match=adapter_keys):
        model.load(save_sam_med2d_checkpoint(tmp_path / "sam-med2d_b.pth"), "cpu")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        model.load(truncated_copy(checkpoint, tmp_path / "cut.pth", keep=0.9), "cpu")
    with pytest.raises(CheckpointError, match="refused to load"):
        model.load(save_pickle_checkpoint(tmp_path / "pickle.pth"), "cpu")
    torch.save({"epoch": 1, "note": "no weights"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no weights found"):
        model.load(tmp_path / "empty.pth", "cpu")


def test_engine_path(checkpoint, image, reference):
    volume = Volume(image, Geometry((1, ROWS, COLUMNS)), VolumeInfo(modality="CT"))
    with Engine(bundled_registry(), device="cpu") as engine:
        engine.load_model("medsam", checkpoint=checkpoint).get(TIMEOUT)
        jobs = [engine.segment("medsam", volume, 0, 0, Prompt2D(box=box), window=WINDOW) for box in BOXES]
        predictions = [job.get(TIMEOUT) for job in jobs]
        assert engine.stats["encodes"] == 1
    for box, prediction in zip(BOXES, predictions, strict=True):
        assert np.array_equal(prediction.mask, reference_segment(reference, box, ROWS, COLUMNS)[0])
