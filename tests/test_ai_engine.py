"""The AI worker: priorities, cancellation, failure isolation, caching and prefetch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from medviewer.ai.api import Embedding, ModelInfo, Prediction, Prompt2D, PromptKind, SegmentationModel
from medviewer.ai.engine import Engine, JobStatus, Priority, take_slice
from medviewer.ai.oblique import ObliquePlane
from medviewer.ai.errors import ModelError, ModelOutOfMemoryError, UnsupportedPromptError
from medviewer.ai.registry import ModelRegistry
from medviewer.jobs import JobCancelled
from medviewer.model import Volume, VolumeInfo

TIMEOUT = 10.0
WORKER = "medviewer-ai-worker"


def fake_info(model_id: str) -> ModelInfo:
    return ModelInfo(id=model_id, name=model_id.title(), prompts=frozenset({PromptKind.BOX, PromptKind.POINTS}))


class FakeModel(SegmentationModel):
    """Thresholds the slice inside the box; records every call in ``calls``."""

    info = fake_info("fake")
    calls: list = []

    def load(self, checkpoint, device):
        self.calls.append(("load", device))
        self.loaded = True

    def encode(self, image2d, window=None, *, modality="", control=None):
        self.calls.append(("encode", float(image2d.mean()), window, modality))
        image = np.asarray(image2d, dtype=np.float32)
        return Embedding(self.info.id, image.copy(), image.shape, image.shape, image.shape, 1.0, window=window)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        self.calls.append(("decode", prompt.box))
        mask = np.zeros(embedding.original_size, bool)
        x0, y0, x1, y1 = (int(v) for v in prompt.box)
        mask[y0 : y1 + 1, x0 : x1 + 1] = embedding.features[y0 : y1 + 1, x0 : x1 + 1] > 50
        return Prediction(mask.astype(np.float32), mask, score=0.9)


class BrokenDecodeModel(FakeModel):
    info = fake_info("broken")

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        raise ValueError("boom: decoder exploded")


class OutOfMemoryModel(FakeModel):
    info = fake_info("oom")
    error: BaseException = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def encode(self, image2d, window=None, *, modality="", control=None):
        raise self.error


class SlowModel(FakeModel):
    """Encodes until released, checking for cancellation like a long loop would."""

    info = fake_info("slow")
    started = threading.Event()
    release = threading.Event()

    def encode(self, image2d, window=None, *, modality="", control=None):
        self.started.set()
        while not self.release.wait(0.01):
            control.check()
        return super().encode(image2d, window, modality=modality, control=control)


class LaneModel(SlowModel):
    """Declares decode_while_encoding; encodes block until released, like SlowModel's."""

    info = ModelInfo(id="lane", name="Lane", prompts=frozenset({PromptKind.BOX}), decode_while_encoding=True)
    decoding = threading.Event()
    finish_decode = threading.Event()
    hold_decodes = False

    def encode(self, image2d, window=None, *, modality="", control=None):
        if not self.release.is_set():
            return super().encode(image2d, window, modality=modality, control=control)
        return FakeModel.encode(self, image2d, window, modality=modality, control=control)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        if self.hold_decodes:
            self.decoding.set()
            self.finish_decode.wait(TIMEOUT)
        return super().decode(embedding, prompt, previous_low_res_mask, control=control)

    def unload(self):
        self.calls.append(("unload",))
        self.loaded = False


class FailingLoadModel(FakeModel):
    info = fake_info("failing_load")

    def load(self, checkpoint, device):
        raise ModelError("weights do not match this build")


@pytest.fixture()
def engine():
    registry = ModelRegistry(bundled_dir="/nonexistent", user_dirs=[], entry_points=[])
    for cls in (FakeModel, BrokenDecodeModel, OutOfMemoryModel, SlowModel, FailingLoadModel, LaneModel):
        registry.register(cls)
    FakeModel.calls = []
    SlowModel.started = threading.Event()
    SlowModel.release = threading.Event()
    LaneModel.started, LaneModel.release = threading.Event(), threading.Event()
    LaneModel.decoding, LaneModel.finish_decode, LaneModel.hold_decodes = threading.Event(), threading.Event(), False
    engine = Engine(registry, device="cpu")
    yield engine
    SlowModel.release.set()
    engine.shutdown()
    assert not engine.running


@pytest.fixture()
def volume():
    array = np.zeros((30, 16, 16), np.int16)
    array[:, 4:12, 4:12] = 100
    array += np.arange(30, dtype=np.int16)[:, None, None]  # every slice differs
    return Volume(array, info=VolumeInfo(modality="CT"))


def block_worker(engine):
    """Occupy the worker until the returned event is set, so jobs pile up in the queue."""
    gate, running = threading.Event(), threading.Event()

    def wait(control):
        running.set()
        gate.wait(TIMEOUT)

    engine.submit(wait, kind="block")
    assert running.wait(TIMEOUT)
    return gate


def test_segment_encodes_once_per_slice_and_reuses_the_embedding(engine, volume):
    first = engine.segment("fake", volume, 0, 5, Prompt2D(box=(2, 2, 8, 8)))
    second = engine.segment("fake", volume, 0, 5, Prompt2D(box=(6, 6, 13, 13)))
    assert first.get(TIMEOUT).mask.sum() == 25 and second.get(TIMEOUT).mask.sum() == 36
    encodes = [c for c in FakeModel.calls if c[0] == "encode"]
    assert len(encodes) == 1
    assert encodes[0][2] == (-160.0, 240.0) and encodes[0][3] == "CT"  # CT default window reached the model
    assert [c[0] for c in FakeModel.calls] == ["load", "encode", "decode", "decode"]
    assert engine.stats == {"encodes": 1, "decodes": 2, "cache_hits": 1}
    # Another window is another embedding.
    engine.segment("fake", volume, 0, 5, Prompt2D(box=(2, 2, 8, 8)), window=(0, 50)).get(TIMEOUT)
    assert engine.stats["encodes"] == 2
    # An embedding fetched explicitly can be decoded directly.
    embedding = engine.encode("fake", volume, 0, 5).get(TIMEOUT)
    assert engine.stats["encodes"] == 2
    assert engine.decode("fake", embedding, Prompt2D(box=(0, 0, 15, 15))).get(TIMEOUT).mask.sum() == 64


def test_interactive_jobs_jump_ahead_of_background_prefetch(engine, volume):
    engine.load_model("fake").get(TIMEOUT)
    finished, threads = [], set()

    def record(job):
        finished.append(job.kind if job.kind != "prefetch" else f"prefetch {job.description.split()[2]}")
        threads.add(threading.current_thread().name)

    gate = block_worker(engine)
    jobs = engine.prefetch("fake", volume, 0, center_index=10, radius=2)
    jobs.append(engine.encode("fake", volume, 0, 20))
    jobs.append(engine.segment("fake", volume, 0, 25, Prompt2D(box=(0, 0, 15, 15))))
    for job in jobs:
        job.add_done_callback(record)
    assert all(job.status is JobStatus.QUEUED for job in jobs)
    gate.set()
    for job in jobs:
        job.get(TIMEOUT)
    assert finished[:2] == ["segment", "encode"]
    assert finished[2:] == ["prefetch 10", "prefetch 9", "prefetch 11", "prefetch 8", "prefetch 12"]
    assert threads == {WORKER}
    assert [c[0] for c in FakeModel.calls].count("encode") == 7


def test_prefetch_is_deduplicated_and_dropped_when_the_cursor_moves(engine, volume):
    engine.load_model("fake").get(TIMEOUT)
    gate = block_worker(engine)
    near_ten = engine.prefetch("fake", volume, 0, center_index=10, radius=1)
    assert len(near_ten) == 3
    assert engine.prefetch("fake", volume, 0, center_index=10, radius=1) == []  # already queued
    near_twenty = engine.prefetch("fake", volume, 0, center_index=20, radius=1)
    assert all(job.status is JobStatus.CANCELLED for job in near_ten)
    gate.set()
    for job in near_twenty:
        job.get(TIMEOUT)
    encoded = sorted(round(c[1]) - 25 for c in FakeModel.calls if c[0] == "encode")  # mean = 25 + index
    assert encoded == [19, 20, 21]
    assert engine.prefetch("fake", volume, 0, center_index=20, radius=1) == []  # all cached now
    # Near the edge only existing slices are queued; a cancelled range can be re-queued.
    edge = engine.prefetch("fake", volume, 0, center_index=0, radius=2)
    assert len(edge) == 3
    assert engine.cancel_prefetch() >= 0


def test_the_calling_thread_never_hashes_the_volume_or_samples_its_window(engine, volume, monkeypatch):
    """Both sample the whole volume (tens of ms; an MR's percentiles over 100 ms): worker work."""
    import medviewer.ai.engine as engine_module

    threads = []
    hash_volume, pick_window = engine_module.volume_fingerprint, engine_module.default_window

    def recording(function):
        def wrapper(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(engine_module, "volume_fingerprint", recording(hash_volume))
    monkeypatch.setattr(engine_module, "default_window", recording(pick_window))
    mr = Volume(volume.array.copy(), info=VolumeInfo(modality="MR"))  # a window from percentiles
    engine.segment("fake", mr, 0, 5, Prompt2D(box=(2, 2, 8, 8))).get(TIMEOUT)
    prefetched = engine.prefetch("fake", mr, 0, center_index=5, radius=1)
    plane = ObliquePlane((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (16, 16), 5.0, 1.0)
    engine.segment_oblique("fake", mr, plane, Prompt2D(box=(2, 2, 8, 8))).get(TIMEOUT)
    engine.encode("fake", mr, 0, 6).get(TIMEOUT)
    for job in prefetched:
        job.get(TIMEOUT)
    assert threads and set(threads) == {WORKER}
    assert engine.forget_volume(mr) == 4  # slices 4-6 and the plane, found by the remembered hash


def test_a_prompt_on_an_encoded_slice_does_not_wait_for_a_background_encode(engine, volume):
    LaneModel.release.set()
    engine.segment("lane", volume, 0, 5, Prompt2D(box=(2, 2, 8, 8))).get(TIMEOUT)  # encodes slice 5
    LaneModel.release.clear()
    background = engine.encode("lane", volume, 0, 9, priority=Priority.BACKGROUND)
    assert LaneModel.started.wait(TIMEOUT)  # the worker is inside slice 9's encode
    threads = []
    prompt = engine.segment("lane", volume, 0, 5, Prompt2D(box=(4, 4, 10, 10)))
    prompt.add_done_callback(lambda job: threads.append(threading.current_thread().name))
    assert prompt.get(TIMEOUT).mask.sum() == 49  # answered while the encode still runs
    assert threads == ["medviewer-ai-decoder"] and not background.done
    # A slice not encoded yet, or a model without the declaration, queues behind the worker.
    uncached = engine.segment("lane", volume, 0, 6, Prompt2D(box=(4, 4, 10, 10)))
    time.sleep(0.2)
    assert uncached.status is JobStatus.QUEUED
    LaneModel.release.set()
    assert uncached.get(TIMEOUT).mask.sum() == 49 and background.get(TIMEOUT) is not None


def test_unloading_waits_for_a_decode_on_the_lane(engine, volume):
    LaneModel.release.set()
    engine.segment("lane", volume, 0, 5, Prompt2D(box=(2, 2, 8, 8))).get(TIMEOUT)
    LaneModel.hold_decodes = True
    prompt = engine.segment("lane", volume, 0, 5, Prompt2D(box=(4, 4, 10, 10)))
    assert LaneModel.decoding.wait(TIMEOUT)
    unload = engine.unload_model("lane")
    time.sleep(0.2)
    assert not unload.done  # held until the decode is through
    LaneModel.finish_decode.set()
    assert prompt.get(TIMEOUT).mask.sum() == 49
    unload.get(TIMEOUT)
    assert FakeModel.calls[-1] == ("unload",)
    # Unloaded: the next prompt goes through the worker, which loads the model again.
    LaneModel.hold_decodes = False
    assert engine.segment("lane", volume, 0, 5, Prompt2D(box=(2, 2, 8, 8))).get(TIMEOUT).mask.sum() == 25


def test_cancel_a_queued_job(engine, volume):
    engine.load_model("fake").get(TIMEOUT)
    gate = block_worker(engine)
    called = []
    job = engine.encode("fake", volume, 0, 3)
    job.add_done_callback(lambda j: called.append((j.status, threading.current_thread().name)))
    assert job.cancel()
    assert job.status is JobStatus.CANCELLED and job.wait(0)
    assert called == [(JobStatus.CANCELLED, threading.current_thread().name)]
    gate.set()
    follow_up = engine.encode("fake", volume, 0, 4)
    follow_up.get(TIMEOUT)
    assert not job.cancel()  # finished jobs cannot be cancelled again
    assert [c[0] for c in FakeModel.calls].count("encode") == 1  # the cancelled job never ran
    with pytest.raises(JobCancelled):
        job.get(0)


def test_cancel_a_running_job_and_the_worker_goes_on(engine, volume):
    job = engine.segment("slow", volume, 0, 3, Prompt2D(box=(0, 0, 4, 4)))
    assert SlowModel.started.wait(TIMEOUT)
    assert job.status is JobStatus.RUNNING
    assert job.cancel()
    assert job.wait(TIMEOUT) and job.status is JobStatus.CANCELLED and job.error is None
    assert engine.segment("fake", volume, 0, 3, Prompt2D(box=(0, 0, 15, 15))).get(TIMEOUT).mask.any()


def test_model_exception_fails_the_job_and_the_worker_serves_the_next(engine, volume):
    seen = []
    job = engine.segment("broken", volume, 0, 1, Prompt2D(box=(0, 0, 4, 4)))
    job.add_done_callback(lambda j: seen.append(threading.current_thread().name))
    assert job.wait(TIMEOUT) and job.status is JobStatus.FAILED
    assert job.error == "segmenting slice 1 (axis 0) failed: ValueError: boom: decoder exploded"
    assert isinstance(job.exception, ValueError)
    with pytest.raises(ModelError, match="boom"):
        job.get()
    assert engine.running and seen == [WORKER]
    assert engine.segment("fake", volume, 0, 1, Prompt2D(box=(0, 0, 15, 15))).get(TIMEOUT).mask.sum() == 64


@pytest.mark.parametrize("kind", ["runtime", "torch"])
def test_out_of_memory_becomes_a_readable_error(engine, volume, kind):
    if kind == "torch":
        torch = pytest.importorskip("torch")
        OutOfMemoryModel.error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
    job = engine.segment("oom", volume, 0, 2, Prompt2D(box=(0, 0, 4, 4)))
    assert job.wait(TIMEOUT) and job.status is JobStatus.FAILED
    assert job.error.startswith("Out of memory on cpu while segmenting slice 2")
    assert "switch the AI device to 'cpu'" in job.error
    assert isinstance(job.exception, ModelOutOfMemoryError)
    OutOfMemoryModel.error = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert engine.segment("fake", volume, 0, 2, Prompt2D(box=(0, 0, 15, 15))).get(TIMEOUT).mask.any()


def test_load_failures_and_bad_requests_are_job_errors(engine, volume):
    job = engine.load_model("failing_load")
    assert job.wait(TIMEOUT) and job.error == "weights do not match this build"
    assert engine.registry.get("failing_load").status == "failed to load: weights do not match this build"
    job = engine.load_model("no_such_model")
    assert job.wait(TIMEOUT) and "no model 'no_such_model'" in job.error
    job = engine.segment("fake", volume, 0, 1, Prompt2D())
    assert job.wait(TIMEOUT) and "empty" in job.error and isinstance(job.exception, UnsupportedPromptError)
    job = engine.set_device("tpu")
    assert job.wait(TIMEOUT) and "unknown device" in job.error
    with pytest.raises(ValueError, match="outside 0..29"):
        engine.segment("fake", volume, 0, 30, Prompt2D(box=(0, 0, 1, 1)))
    assert engine.load_model("fake").get(TIMEOUT).id == "fake"
    assert engine.registry.get("fake").status == "loaded"
    assert engine.set_device("cpu").get(TIMEOUT) == "cpu"


def test_progress_is_reported_and_jobs_are_ordered_fifo_within_a_priority(engine):
    progress, order = [], []

    def task(name):
        def run(control):
            control.report(1, 2, name)
            order.append(name)
            return name

        return run

    gate = block_worker(engine)
    jobs = [engine.submit(task(f"t{i}"), priority=Priority.FOREGROUND) for i in range(3)]
    jobs[1].add_progress_callback(lambda job: progress.append(job.progress))
    gate.set()
    assert [job.get(TIMEOUT) for job in jobs] == ["t0", "t1", "t2"] and order == ["t0", "t1", "t2"]
    assert progress == [(1, 2, "t1")] and jobs[1].progress == (1, 2, "t1")


def test_shutdown_cancels_pending_work(volume):
    registry = ModelRegistry(bundled_dir="/nonexistent", user_dirs=[], entry_points=[])
    registry.register(FakeModel)
    engine = Engine(registry, device="cpu")
    gate = block_worker(engine)
    queued = engine.encode("fake", volume, 0, 1)
    threading.Timer(0.2, gate.set).start()
    started = time.monotonic()
    engine.shutdown()
    assert queued.status is JobStatus.CANCELLED and not engine.running
    assert time.monotonic() - started < TIMEOUT
    with pytest.raises(ModelError, match="shut down"):
        engine.encode("fake", volume, 0, 1)


def test_take_slice_orientations():
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert take_slice(array, 0, 1).shape == (3, 4)
    assert take_slice(array, 1, 2).shape == (2, 4)
    assert np.array_equal(take_slice(array, 2, 3), array[:, :, 3])
    with pytest.raises(ValueError):
        take_slice(array, 3, 0)
