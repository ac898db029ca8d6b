"""The garbage-collector policy: long-lived objects frozen, cycles reclaimed where big things go."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from medviewer import gc_control
from medviewer.ai import Engine, ModelRegistry
from tests.fake_models import BoxFillModel


class _Node:
    """A weak-referenceable object to build reference cycles from."""

    def __init__(self):
        self.other = None
        self.payload = np.zeros(1000)


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def policy():
    gc_control.enable()
    yield
    gc_control.enable(False)
    gc.enable()


def test_the_policy_is_off_unless_the_application_turns_it_on():
    assert not gc_control.enabled()
    before = gc.get_freeze_count()
    gc_control.freeze_survivors()
    with gc_control.collection_paused():
        assert gc.isenabled()
    assert gc.get_freeze_count() == before
    assert gc_control.collect_and_freeze() == 0.0


def test_frozen_cycles_survive_collections_until_collect_and_freeze(policy):
    alive = _cycle()
    gc_control.freeze_survivors()
    assert gc.get_freeze_count() > 0
    # The cycle became garbage after it was frozen: an ordinary full collection skips it...
    gc.collect()
    assert alive() is not None
    # ...the explicit pass the application runs after closing a volume reclaims it.
    assert gc_control.collect_and_freeze() > 0.0
    assert alive() is None
    assert gc.get_freeze_count() > 0


def test_collection_is_paused_inside_and_survivors_frozen_after(policy):
    gc.unfreeze()
    with gc_control.collection_paused():
        assert not gc.isenabled()
        with gc_control.collection_paused():  # nested: still paused after the inner block
            pass
        assert not gc.isenabled()
        kept = _Node()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert kept.payload.size == 1000


def test_a_failed_block_freezes_nothing_and_turns_collection_back_on(policy):
    gc.unfreeze()
    with pytest.raises(RuntimeError):
        with gc_control.collection_paused():
            raise RuntimeError("model load failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_collector_turned_off_by_someone_else_stays_off(policy):
    gc.disable()
    with gc_control.collection_paused():
        pass
    assert not gc.isenabled()


def test_engine_freezes_at_model_load_and_reclaims_at_unload(policy):
    registry = ModelRegistry(bundled_dir="/nonexistent", user_dirs=[], entry_points=[])
    registry.register(BoxFillModel)
    engine = Engine(registry, device="cpu")
    try:
        gc.unfreeze()
        engine.load_model(BoxFillModel.info.id).get(30)
        assert gc.get_freeze_count() > 0
        model = weakref.ref(engine.loaded_model(BoxFillModel.info.id))
        model().cycle = model()  # an object graph with a cycle, as real models have
        engine.unload_model(BoxFillModel.info.id).get(30)
        assert model() is None
    finally:
        engine.shutdown()
