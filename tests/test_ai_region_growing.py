"""The region-growing plugin: a classic algorithm behind the same API as the SAM models."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("SimpleITK")

from medviewer.ai.api import Dimensionality, Prompt2D, Prompt3D, PromptKind  # noqa: E402
from medviewer.ai.engine import Engine  # noqa: E402
from medviewer.ai.errors import UnsupportedPromptError  # noqa: E402
from medviewer.ai.registry import ModelRegistry  # noqa: E402
from medviewer.model import Geometry, Volume  # noqa: E402

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry(user_dirs=[], entry_points=[])


@pytest.fixture(scope="module")
def model(registry):
    model = registry.create("region_growing")
    model.load(None, "cpu")
    return model


@pytest.fixture(scope="module")
def phantom():
    """Two bright blobs of different brightness in a noisy background, 24 x 48 x 48."""
    rng = np.random.default_rng(7)
    array = rng.normal(0, 5, size=(24, 48, 48))
    zz, yy, xx = np.mgrid[:24, :48, :48]
    sphere = (zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 7**2
    cube = (abs(zz - 12) <= 5) & (abs(yy - 34) <= 6) & (abs(xx - 34) <= 6)
    array[sphere] += 200
    array[cube] += 400
    return array.astype(np.int16), sphere, cube


def test_manifest_declares_a_weight_free_2d_and_3d_point_model(registry):
    info = registry.get("region_growing").info
    assert not info.needs_checkpoint
    assert info.dims == {Dimensionality.TWO_D, Dimensionality.THREE_D}
    assert {PromptKind.POINTS, PromptKind.POINTS_3D} <= info.prompts
    assert registry.get("region_growing").status == "available"


def test_3d_growth_from_a_click_fills_the_object_and_only_it(model, phantom):
    array, sphere, cube = phantom
    prediction = model.predict_3d(array, Prompt3D(points=((16, 16, 12),), labels=(1,)))
    assert prediction.mask.shape == array.shape
    overlap = np.logical_and(prediction.mask, sphere).sum()
    assert overlap / sphere.sum() > 0.97 and not np.logical_and(prediction.mask, cube).any()
    both = model.predict_3d(array, Prompt3D(points=((16, 16, 12), (34, 34, 12)), labels=(1, 1)))
    assert both.mask[cube].mean() > 0.97 and both.mask[sphere].mean() > 0.97


def test_negative_click_and_box_limit_the_region(model, phantom):
    array, sphere, cube = phantom
    # The two seeds span both brightnesses; a negative click on the cube excludes it again.
    excluded = model.predict_3d(array, Prompt3D(points=((16, 16, 12), (34, 34, 12), (36, 34, 12)), labels=(1, 1, 0)))
    assert excluded.mask[sphere].mean() > 0.97
    assert not excluded.mask[cube].any()
    boxed = model.predict_3d(array, Prompt3D(box=(8, 8, 10, 24, 24, 14)))  # no clicks: the centre seeds
    assert boxed.mask.any() and not boxed.mask[:10].any() and not boxed.mask[15:].any()
    assert not boxed.mask[:, :, 25:].any()
    with pytest.raises(UnsupportedPromptError, match="positive click"):
        model.predict_3d(array, Prompt3D(points=((16, 16, 12),), labels=(0,)))


def test_2d_through_the_engine_like_any_other_model(registry, phantom):
    array, sphere, _ = phantom
    volume = Volume(array, Geometry(array.shape, spacing=(0.8, 0.8, 2.0)))
    with Engine(registry, device="cpu") as engine:
        prediction = engine.segment("region_growing", volume, 0, 12, Prompt2D(points=((16, 16),), labels=(1,))).get(
            TIMEOUT
        )
        assert prediction.score is None and prediction.probabilities.dtype == np.float32
        assert np.logical_and(prediction.mask, sphere[12]).sum() / sphere[12].sum() > 0.97
        assert not prediction.mask[sphere[12] == 0].sum() > 5
        coronal = engine.segment("region_growing", volume, 1, 16, Prompt2D(points=((16, 12),), labels=(1,))).get(
            TIMEOUT
        )
        assert coronal.mask.shape == (24, 48) and coronal.mask[12, 16]
        result = engine.predict_3d("region_growing", volume, Prompt3D(points=((34, 34, 12),), labels=(1,))).get(TIMEOUT)
        assert result.mask.sum() > 1000


def test_classic_plugin_runs_without_importing_torch():
    """A weight-free model must not pay torch's multi-second import (or need torch at all)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from medviewer.ai import Engine, ModelRegistry, Prompt2D
        image = np.zeros((1, 20, 20), np.int16)
        image[0, 5:15, 5:15] = 100
        with Engine(ModelRegistry(user_dirs=[], entry_points=[])) as engine:
            job = engine.segment("region_growing", image, 0, 0, Prompt2D(points=((9, 9),), labels=(1,)))
            print(int(job.get(30).mask.sum()), "torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["100", "False"]
