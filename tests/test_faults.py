"""Faults: broken plugins, a dying AI worker, full disks, read-only folders and cancel at
every progress point. No crash, no hang, no half-written file, no lost previous file."""

from __future__ import annotations

import errno
import os
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from medviewer.ai.api import ModelInfo, Prompt2D, PromptKind, SegmentationModel
from medviewer.ai.engine import Engine, JobStatus
from medviewer.ai.errors import ModelError
from medviewer.ai.registry import ModelRegistry
from medviewer.export.formats import export_segmentation
from medviewer.io.errors import WriteError
from medviewer.io.loader import load_volume
from medviewer.io.session import capture_session, load_session, save_session
from medviewer.jobs import JobCancelled, JobControl
from medviewer.model import Segment, SegmentTable, Volume, VolumeInfo
from medviewer.model.labelmap import LabelMap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_fixtures import ramp_volume, write_series  # noqa: E402

TIMEOUT = 10.0

# -- plugins and the AI worker ---------------------------------------------------------------------
MANIFEST = 'id = "{id}"\nname = "{id}"\nentry = "plugin:Model"\nprompts = ["box"]\ndims = "2d"\n'
PLUGIN = """
import numpy as np
from medviewer.ai.api import Embedding, Prediction, SegmentationModel
{top}

class Model(SegmentationModel):
    def load(self, checkpoint, device):
        {load}

    def encode(self, image2d, window=None, *, modality="", control=None):
        image = np.asarray(image2d, dtype=np.float32)
        return Embedding(self.info.id, image, image.shape, image.shape, image.shape, 1.0)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        {decode}
        mask = embedding.features > 0
        return Prediction(mask.astype(np.float32), mask)
"""
FAULTS = {
    "good": ("", "pass", "pass"),
    "import_error": ("raise ImportError('needs libfoo 3')", "pass", "pass"),
    "load_error": ("", "raise RuntimeError('weights file is for another build')", "pass"),
    "inference_error": ("", "pass", "raise ZeroDivisionError('decoder divided by zero')"),
}


@pytest.fixture
def plugin_engine(tmp_path):
    root = tmp_path / "plugins"
    for plugin_id, (top, load, decode) in FAULTS.items():
        folder = root / plugin_id
        folder.mkdir(parents=True)
        (folder / "plugin.toml").write_text(MANIFEST.format(id=plugin_id))
        (folder / "plugin.py").write_text(textwrap.dedent(PLUGIN).format(top=top, load=load, decode=decode))
    registry = ModelRegistry(bundled_dir="/nonexistent", user_dirs=[root], entry_points=[])
    engine = Engine(registry, device="cpu")
    yield engine
    engine.shutdown()


@pytest.fixture
def small_volume():
    array = np.zeros((3, 16, 16), np.int16)
    array[:, 4:12, 4:12] = 100
    return Volume(array, info=VolumeInfo(modality="CT"))


def _works(engine, volume, model_id="good") -> bool:
    return bool(engine.segment(model_id, volume, 0, 1, Prompt2D(box=(0, 0, 15, 15))).get(TIMEOUT).mask.any())


@pytest.mark.parametrize(
    "plugin_id, stage, expected",
    [
        ("import_error", "load", "ImportError: needs libfoo 3"),
        ("load_error", "load", "weights file is for another build"),
        ("inference_error", "segment", "ZeroDivisionError: decoder divided by zero"),
    ],
)
def test_plugin_failures_become_job_errors_and_the_engine_keeps_serving(plugin_engine, small_volume, plugin_id,
                                                                         stage, expected):
    if stage == "load":
        job = plugin_engine.load_model(plugin_id)
    else:
        job = plugin_engine.segment(plugin_id, small_volume, 0, 1, Prompt2D(box=(0, 0, 15, 15)))
    assert job.wait(TIMEOUT) and job.status is JobStatus.FAILED
    assert expected in job.error
    with pytest.raises(ModelError):
        job.get()
    if stage == "load":
        assert plugin_engine.registry.get(plugin_id).status.startswith("failed to load")
    assert plugin_engine.running and _works(plugin_engine, small_volume)


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("this exception cannot be printed")


class _UnprintableModel(SegmentationModel):
    info = ModelInfo(id="unprintable", name="Unprintable", prompts=frozenset({PromptKind.BOX}))

    def load(self, checkpoint, device):
        pass

    def encode(self, image2d, window=None, *, modality="", control=None):
        raise _Unprintable()

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        raise AssertionError("not reached")


def test_exception_that_cannot_be_printed_fails_its_job_only(plugin_engine, small_volume):
    plugin_engine.registry.register(_UnprintableModel)
    job = plugin_engine.segment("unprintable", small_volume, 0, 1, Prompt2D(box=(0, 0, 15, 15)))
    assert job.wait(TIMEOUT), "the worker died and left the job hanging"
    assert job.status is JobStatus.FAILED and "_Unprintable" in job.error
    assert plugin_engine.running and _works(plugin_engine, small_volume)


def test_worker_thread_death_fails_the_job_clearly_and_restarts_the_worker(plugin_engine, small_volume):
    first_thread = plugin_engine._thread
    job = plugin_engine.submit(lambda control: 42, kind="task", description="computing the answer")
    queued = plugin_engine.submit(lambda control: 43, kind="task", description="computing the next answer")
    original_finish = type(job)._finish
    broken_once = threading.Event()

    def finish_breaks_once(self, status, *args, **kwargs):
        if self is job and not broken_once.is_set():
            broken_once.set()
            raise RuntimeError("bookkeeping bug outside any job")
        return original_finish(self, status, *args, **kwargs)

    type(job)._finish = finish_breaks_once
    try:
        assert job.wait(TIMEOUT), "the job was left hanging when the worker died"
    finally:
        type(job)._finish = original_finish
    assert job.status is JobStatus.FAILED
    assert "AI worker stopped unexpectedly while computing the answer" in job.error
    assert queued.get(TIMEOUT) == 43
    assert plugin_engine.running and plugin_engine._thread is not first_thread
    assert _works(plugin_engine, small_volume)


# -- writing: disk full, read-only folders ----------------------------------------------------------
GEOMETRY_SHAPE = (4, 10, 12)


@pytest.fixture(scope="module")
def dicom_scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    write_series(folder, ramp_volume(GEOMETRY_SHAPE))
    return load_volume(folder)


def _labels():
    labels = np.zeros(GEOMETRY_SHAPE, np.uint8)
    labels[1:3, 2:7, 3:9] = 1
    labels[2:4, 5:9, 6:11] = 2
    return labels


SEGMENTS = [Segment(1, "liver", (221, 130, 101)), Segment(2, "spleen", (157, 108, 162))]
FORMATS = ("nii.gz", "seg.nrrd", "dcm", "csv", "json")


def _disk_full(monkeypatch):
    """Every writer path fails half-way with ENOSPC after writing some bytes (as a full disk does)."""
    import builtins

    import pydicom
    import SimpleITK as sitk

    real_open = builtins.open

    class HalfWriter:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            self._handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return HalfWriter(handle) if any(c in mode for c in "wax") else handle

    def full_write_image(image, name, *args, **kwargs):
        with real_open(name, "wb") as handle:
            handle.write(b"\x1f\x8b partial")
        raise RuntimeError(f"ITK ERROR: could not write {name}: No space left on device")

    def full_save_as(self, filename, *args, **kwargs):
        with real_open(filename, "wb") as handle:
            handle.write(b"\0" * 200)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("medviewer.io.safety.open", full_open, raising=False)
    monkeypatch.setattr(sitk, "WriteImage", full_write_image)
    monkeypatch.setattr(pydicom.Dataset, "save_as", full_save_as)


def _folder_listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_disk_full_leaves_no_partial_file_and_keeps_the_previous_export(tmp_path, monkeypatch, dicom_scan, fmt):
    target = tmp_path / f"export.{fmt}"
    export_segmentation(target, _labels(), dicom_scan.geometry, SEGMENTS, dicom_scan)
    before = _folder_listing(tmp_path)
    _disk_full(monkeypatch)
    with pytest.raises(WriteError) as caught:
        export_segmentation(target, _labels() * 0 + 1, dicom_scan.geometry, SEGMENTS, dicom_scan, overwrite=True)
    assert target.name in str(caught.value)
    monkeypatch.undo()
    assert _folder_listing(tmp_path) == before, "a partial file was left or the previous export changed"


def test_disk_full_while_saving_a_session_keeps_the_previous_session(tmp_path, monkeypatch, dicom_scan):
    labelmap = LabelMap(dicom_scan.geometry, _labels())
    table = SegmentTable()
    for segment in SEGMENTS:
        table.add(segment.name, segment.color, label=segment.label)
    path = save_session(tmp_path / "work.mvsession", capture_session(dicom_scan, labelmap, table))
    before = _folder_listing(tmp_path)
    _disk_full(monkeypatch)
    labelmap.array[:] = 0
    with pytest.raises(WriteError, match="work.mvsession"):
        save_session(path, capture_session(dicom_scan, labelmap, table))
    monkeypatch.undo()
    assert _folder_listing(tmp_path) == before
    np.testing.assert_array_equal(load_session(path).labels, _labels())


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder no file can be created in; as root (where chmod does not bind) creation is refused."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        import tempfile

        import SimpleITK as sitk

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        def refuse_image(image, name, *args, **kwargs):
            raise RuntimeError(f"ITK ERROR: could not create {name}: Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        monkeypatch.setattr(sitk, "WriteImage", refuse_image)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_folder_is_a_clear_write_error(read_only_folder, dicom_scan, fmt):
    target = read_only_folder / f"export.{fmt}"
    with pytest.raises(WriteError) as caught:
        export_segmentation(target, _labels(), dicom_scan.geometry, SEGMENTS, dicom_scan)
    assert target.name in str(caught.value) or str(read_only_folder) in str(caught.value)
    assert list(read_only_folder.iterdir()) == []


# -- cancel at every progress point -----------------------------------------------------------------
class CancelAt(JobControl):
    """Cancels itself when progress is reported for the ``n``-th time (counting from 1)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def report(self, done, total, message=""):
        self.calls += 1
        if self.calls == self.n:
            self.cancel()
        super().report(done, total, message)


def _progress_points(run) -> int:
    control = CancelAt(0)
    run(control)
    return control.calls


@pytest.mark.parametrize("fmt", ("dcm", "csv"))
def test_export_cancelled_at_every_progress_point_writes_nothing(tmp_path, dicom_scan, fmt):
    def run(control, target=tmp_path / "counting" / f"out.{fmt}"):
        target.parent.mkdir(exist_ok=True)
        return export_segmentation(target, _labels(), dicom_scan.geometry, SEGMENTS, dicom_scan, overwrite=True,
                                   control=control)

    points = _progress_points(run)
    assert points >= 2
    for n in range(1, points + 1):
        folder = tmp_path / f"cancel{n}"
        folder.mkdir()
        with pytest.raises(JobCancelled):
            run(CancelAt(n), folder / f"out.{fmt}")
        assert list(folder.iterdir()) == [], f"cancel at progress point {n} left {list(folder.iterdir())}"


def test_dicom_load_cancelled_at_every_progress_point(tmp_path):
    write_series(tmp_path, ramp_volume((5, 6, 7)))
    points = _progress_points(lambda control: load_volume(tmp_path, control=control))
    assert points >= 3
    for n in range(1, points + 1):
        with pytest.raises(JobCancelled):
            load_volume(tmp_path, control=CancelAt(n))
    assert load_volume(tmp_path).shape == (5, 6, 7)


def test_session_save_cancelled_keeps_the_previous_session(tmp_path, dicom_scan):
    labelmap = LabelMap(dicom_scan.geometry, _labels())
    path = save_session(tmp_path / "work.mvsession", capture_session(dicom_scan, labelmap, SegmentTable()))
    before = path.read_bytes()
    control = JobControl()
    control.cancel()
    with pytest.raises(JobCancelled):
        save_session(path, capture_session(dicom_scan, LabelMap(dicom_scan.geometry), SegmentTable()), control=control)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["work.mvsession"]
