"""Engine features the GUI relies on: the public checkpoint SHA, the previous 3D result handed
to models that can continue from it, and the worker yielding the CPU to the GUI thread."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from medviewer.ai.api import Dimensionality, ModelInfo, Prediction3D, Prompt3D, PromptKind, SegmentationModel
from medviewer.ai.checkpoints import file_sha256
from medviewer.ai.engine import WORKER_NICENESS, Engine, lower_thread_priority
from medviewer.ai.registry import ModelRegistry

TIMEOUT = 10.0
INFO_3D = dict(prompts=frozenset({PromptKind.POINTS_3D}), dims=frozenset({Dimensionality.THREE_D}))


class ContinuingModel(SegmentationModel):
    """A 3D model that takes ``previous`` and records what it got."""

    info = ModelInfo(id="continuing", name="Continuing", **INFO_3D)
    seen: list = []

    def load(self, checkpoint, device):
        self.loaded = True

    def predict_3d(self, volume, prompt, *, spacing=(1, 1, 1), window=None, modality="", control=None,
                   previous=None):
        type(self).seen.append(previous)
        mask = np.zeros(np.asarray(volume).shape, bool)
        for x, y, z in prompt.points:
            mask[int(z), int(y), int(x)] = True
        return Prediction3D(mask, details={"clicks": len(prompt.points)})


class FreshModel(ContinuingModel):
    """A 3D model without ``previous``: must still work when the GUI passes one."""

    info = ModelInfo(id="fresh", name="Fresh", **INFO_3D)

    def predict_3d(self, volume, prompt, *, spacing=(1, 1, 1), window=None, modality="", control=None):
        return super().predict_3d(volume, prompt, spacing=spacing, control=control)


class WeightedModel(ContinuingModel):
    info = ModelInfo(id="weighted", name="Weighted", **INFO_3D)


@pytest.fixture()
def engine():
    registry = ModelRegistry(bundled_dir="/nonexistent", user_dirs=[], entry_points=[])
    for cls in (ContinuingModel, FreshModel, WeightedModel):
        registry.register(cls)
    ContinuingModel.seen = []
    engine = Engine(registry, device="cpu")
    yield engine
    engine.shutdown()


def test_previous_3d_result_reaches_only_models_that_take_it(engine):
    volume = np.zeros((6, 8, 8), np.int16)
    first = engine.predict_3d("continuing", volume, Prompt3D(points=((1, 2, 3),), labels=(1,))).get(TIMEOUT)
    prompt = Prompt3D(points=((1, 2, 3), (4, 5, 2)), labels=(1, 0))
    second = engine.predict_3d("continuing", volume, prompt, previous=first).get(TIMEOUT)
    assert ContinuingModel.seen == [None, first] and second.details["clicks"] == 2
    fresh = engine.predict_3d("fresh", volume, prompt, previous=first).get(TIMEOUT)
    assert fresh.mask[2, 5, 4] and fresh.mask[3, 2, 1]


def test_checkpoint_sha_is_public_and_follows_the_loaded_file(engine, tmp_path):
    assert engine.checkpoint_sha("weighted") == ""  # not loaded yet
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"some weights")
    engine.load_model("weighted", weights).get(TIMEOUT)
    assert engine.checkpoint_sha("weighted") == file_sha256(weights)
    engine.unload_model("weighted").get(TIMEOUT)
    assert engine.checkpoint_sha("weighted") == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux-only")
def test_the_worker_runs_at_a_lower_priority_than_the_gui_thread(engine):
    main_niceness = os.getpriority(os.PRIO_PROCESS, os.getpid())
    worker = engine.submit(lambda control: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).get(TIMEOUT)
    assert worker == min(19, main_niceness + WORKER_NICENESS)
    # Threads the worker starts (torch's OpenMP pool) inherit it; the calling thread is untouched.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_niceness

    results = {}

    def restarted_worker():  # a worker started by a lowered thread does not sink further
        lower_thread_priority()
        results["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def lowered_parent():
        lower_thread_priority()
        child = threading.Thread(target=restarted_worker)
        child.start()
        child.join()

    parent = threading.Thread(target=lowered_parent)
    parent.start()
    parent.join()
    assert results["nice"] == min(19, main_niceness + WORKER_NICENESS)
