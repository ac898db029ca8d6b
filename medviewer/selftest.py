"""``medviewer --self-test``: prove an installation works end to end, without a display.

An installer can only be trusted once its own copy of Python, torch, the bundled weights,
the plugin folder and the writers have run together. The self-test does exactly what a
user's first session does, headlessly: load the demo CT, segment the liver with LiteMedSAM
through the same Engine the GUI uses (one box on one slice), export the result as a Slicer
``.seg.nrrd`` and a NIfTI label map, read both back and compare labels and geometry.
``gui=True`` adds one step that opens the main window with the demo and saves a screenshot
(needs a display, e.g. Xvfb).

Every step reports pass/fail and its time; a failing step stops the run (later steps depend
on it) and the exit code is non-zero. Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The model the self-test runs: the one whose weights every installation carries.
SELF_TEST_MODEL = "litemedsam"
#: The demo structure the box is drawn around, and the agreement the prediction must reach.
TARGET_LABEL = 1  # liver in medviewer.demo.ORGANS
MIN_DICE = 0.80
#: Extra pixels around the ground-truth bounding box, as a user's box would have.
BOX_MARGIN_PX = 3
#: Label values written to the export: the model's mask and one ground-truth organ.
PREDICTED_LABEL = 1
REFERENCE_LABEL = 2
REFERENCE_ORGAN = 2  # spleen


class SelfTestFailure(Exception):
    """A check did not hold; the message says what was expected and what was found."""


@dataclass
class StepResult:
    name: str
    status: str  # "pass", "fail" or "skip"
    seconds: float = 0.0
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def line(self) -> str:
        timing = f"{self.seconds:6.2f} s" if self.status != "skip" else " " * 8
        text = f"  [{self.status.upper()}] {timing}  {self.name}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class SelfTestReport:
    steps: list[StepResult] = field(default_factory=list)
    header: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.passed for step in self.steps)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary(self) -> str:
        total = sum(step.seconds for step in self.steps)
        done = sum(step.passed for step in self.steps)
        verdict = "passed" if self.passed else "FAILED"
        return f"self-test {verdict}: {done} of {len(self.steps)} steps passed in {total:.1f} s"

    def text(self) -> str:
        return "\n".join([self.header, *(step.line() for step in self.steps), self.summary()])


def describe_environment() -> str:
    """One line naming the versions that matter when a bundle misbehaves."""
    from medviewer import __version__

    parts = [f"medviewer {__version__}", f"Python {platform.python_version()}", f"{platform.system()} {platform.machine()}"]
    if getattr(sys, "frozen", False):
        parts.append("frozen bundle")
    return "medviewer self-test (" + ", ".join(parts) + ")"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def box_around(mask2d: np.ndarray, margin: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) pixel box around a 2D mask, widened by ``margin`` and clipped."""
    rows, columns = np.nonzero(mask2d)
    height, width = mask2d.shape
    return (
        float(max(columns.min() - margin, 0)),
        float(max(rows.min() - margin, 0)),
        float(min(columns.max() + margin, width - 1)),
        float(min(rows.max() + margin, height - 1)),
    )


class _Run:
    """Runs steps in order, timing each; after a failure the rest are reported as skipped."""

    def __init__(self, report: SelfTestReport, echo: Callable[[str], None] | None):
        self.report = report
        self.echo = echo
        self.failed = False

    def step(self, name: str, function: Callable[[], str]) -> None:
        if self.failed:
            result = StepResult(name, "skip", detail="not run: an earlier step failed")
        else:
            started = time.perf_counter()
            try:
                detail = function() or ""
                status = "pass"
            except SelfTestFailure as exc:
                detail, status = str(exc), "fail"
            except Exception as exc:  # noqa: BLE001 - any crash is a failed step, reported readably
                detail, status = f"{type(exc).__name__}: {exc}", "fail"
                if os.environ.get("MEDVIEWER_SELF_TEST_TRACEBACK"):
                    detail += "\n" + traceback.format_exc()
            result = StepResult(name, status, time.perf_counter() - started, detail)
            self.failed = status != "pass"
        self.report.steps.append(result)
        if self.echo is not None:
            self.echo(result.line())


def run_self_test(
    workdir: str | Path | None = None,
    gui: bool = False,
    device: str = "cpu",
    echo: Callable[[str], None] | None = None,
    engine: Any = None,
) -> SelfTestReport:
    """Run every step and return the report; ``echo`` receives each line as it is known.

    ``workdir`` receives the exported files (a temporary folder, removed afterwards, when
    not given). ``engine``: an already running :class:`medviewer.ai.engine.Engine` to use
    (and leave running) instead of a new one, e.g. tests that run the self-test repeatedly.
    """
    report = SelfTestReport(header=describe_environment())
    if echo is not None:
        echo(report.header)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="medviewer-self-test-") as temporary:
            _run_steps(report, Path(temporary), gui, device, echo, engine)
    else:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        _run_steps(report, folder, gui, device, echo, engine)
    if echo is not None:
        echo(report.summary())
    return report


def _run_steps(report: SelfTestReport, folder: Path, gui: bool, device: str, echo, shared_engine) -> None:
    run = _Run(report, echo)
    state: dict[str, Any] = {}

    def load_demo() -> str:
        from medviewer.demo import make_demo_case

        volume, labels, table = make_demo_case()
        organ = labels.array == TARGET_LABEL
        if not organ.any():
            raise SelfTestFailure(f"the demo case holds no label {TARGET_LABEL}")
        areas = organ.sum(axis=(1, 2))
        state.update(volume=volume, labels=labels, table=table, slice=int(np.argmax(areas)))
        size = "x".join(map(str, volume.geometry.size_xyz))
        return f"{size} voxels, {volume.info.modality}, {len(table)} segments"

    def find_model() -> str:
        from medviewer.ai.registry import ModelRegistry, bundled_plugins_dir

        registry = ModelRegistry()
        entry = registry.get(SELF_TEST_MODEL)
        if not entry.available:
            raise SelfTestFailure(f"{entry.name} is unusable: {entry.status} (plugins from {bundled_plugins_dir()})")
        checkpoint = registry.resolve_checkpoint(SELF_TEST_MODEL)
        state.update(registry=registry, checkpoint=checkpoint)
        return f"{entry.name} from {entry.location}; weights {checkpoint}"

    def load_model() -> str:
        from medviewer.ai.engine import Engine

        if shared_engine is not None:
            engine = shared_engine  # keeps its own registry; the step above checked discovery
        else:
            engine = state["engine"] = Engine(state["registry"], device=device)
        state["model_engine"] = engine
        engine.load_model(SELF_TEST_MODEL).get(timeout=600)
        sha = engine.checkpoint_sha(SELF_TEST_MODEL) if hasattr(engine, "checkpoint_sha") else ""
        expected = state["registry"].get(SELF_TEST_MODEL).info.checkpoint.sha256
        if expected and sha and sha != expected:
            raise SelfTestFailure(f"checkpoint SHA-256 {sha[:12]}... differs from the manifest's {expected[:12]}...")
        import torch

        return f"on {engine.device} (torch {torch.__version__})" + (f", checkpoint sha256 {sha[:12]}..." if sha else "")

    def segment() -> str:
        from medviewer.ai.api import Prompt2D

        volume, k = state["volume"], state["slice"]
        truth = state["labels"].array[k] == TARGET_LABEL
        box = box_around(truth, BOX_MARGIN_PX)
        prediction = state["model_engine"].segment(SELF_TEST_MODEL, volume, 0, k, Prompt2D(box=box)).get(timeout=600)
        mask = np.asarray(prediction.mask, dtype=bool)
        if mask.shape != truth.shape:
            raise SelfTestFailure(f"the model returned a {mask.shape} mask for a {truth.shape} slice")
        agreement = dice(mask, truth)
        if agreement < MIN_DICE:
            raise SelfTestFailure(f"Dice {agreement:.3f} with the liver on axial slice {k}, expected >= {MIN_DICE}")
        state["mask"] = mask
        box_text = ",".join(f"{v:g}" for v in box)
        return f"box {box_text} on axial slice {k}: {int(mask.sum())} pixels, Dice {agreement:.3f} vs ground truth"

    def export() -> str:
        from medviewer.export import formats
        from medviewer.model.segments import Segment

        volume, k = state["volume"], state["slice"]
        expected = np.zeros(volume.geometry.shape, dtype=np.uint8)
        expected[state["labels"].array == REFERENCE_ORGAN] = REFERENCE_LABEL
        expected[k][state["mask"]] = PREDICTED_LABEL
        segments = [
            Segment(PREDICTED_LABEL, "liver (LiteMedSAM)", (221, 130, 101)),
            Segment(REFERENCE_LABEL, "spleen (ground truth)", (157, 108, 162)),
        ]
        written = []
        for name in ("self-test.seg.nrrd", "self-test.nii.gz"):
            result = formats.export_segmentation(folder / name, expected, volume.geometry, segments, volume, overwrite=True)
            written += result.paths
        state.update(expected=expected, segments=segments, written=written)
        return ", ".join(f"{p.name} ({p.stat().st_size // 1024} KiB)" for p in written)

    def read_back() -> str:
        from medviewer.io.segmentation_files import load_segmentation

        volume, expected = state["volume"], state["expected"]
        checked = []
        for path in state["written"]:
            loaded = load_segmentation(path)  # on the file's own grid: its geometry is checked too
            if not loaded.geometry.same_grid(volume.geometry):
                raise SelfTestFailure(f"{path.name}: geometry changed: {volume.geometry.describe_difference(loaded.geometry)}")
            array = np.asarray(loaded.array)
            if array.shape != expected.shape:
                raise SelfTestFailure(f"{path.name}: read back {array.shape}, wrote {expected.shape}")
            wrong = int(np.count_nonzero(array != expected))
            if wrong:
                found = sorted(int(v) for v in np.unique(array))
                raise SelfTestFailure(f"{path.name}: {wrong} voxels differ from what was written (labels read: {found})")
            if path.name.endswith(".seg.nrrd"):
                names = {s.label: s.name for s in loaded.segments}
                for segment in state["segments"]:
                    if names.get(segment.label) != segment.name:
                        raise SelfTestFailure(
                            f"{path.name}: segment {segment.label} reads back as {names.get(segment.label)!r}, "
                            f"wrote {segment.name!r}"
                        )
            checked.append(path.name)
        return f"{' and '.join(checked)}: labels {{0, {PREDICTED_LABEL}, {REFERENCE_LABEL}}} and geometry identical"

    def open_window() -> str:
        return _window_screenshot(folder / "self-test-window.png")

    try:
        run.step("load the demo case", load_demo)
        run.step(f"find the {SELF_TEST_MODEL} plugin and its weights", find_model)
        run.step("load LiteMedSAM through the Engine", load_model)
        run.step("segment the liver with one box", segment)
        run.step("export .seg.nrrd and .nii.gz", export)
        run.step("read the exports back", read_back)
        if gui:
            engine = state.pop("engine", None)
            if engine is not None:
                engine.shutdown()
            run.step("open the main window and grab a screenshot", open_window)
    finally:
        engine = state.get("engine")
        if engine is not None:
            engine.shutdown()


def _window_screenshot(path: Path) -> str:
    """Open the window with the demo (as ``medviewer --demo --screenshot``) and check the image."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SelfTestFailure("no display: run it under Xvfb, e.g. xvfb-run -a medviewer --self-test --gui")
    os.environ.setdefault("MEDVIEWER_RECOVERY_DIR", str(path.parent / "recovery"))  # no autosave in the user's folders
    from medviewer.ui.app import run_app

    code = run_app(demo=True, screenshot=str(path), layout="2x2")
    if code != 0 or not path.is_file():
        raise SelfTestFailure(f"the window did not produce a screenshot (exit code {code})")
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    if image.isNull() or image.width() < 200 or image.height() < 200:
        raise SelfTestFailure(f"{path}: the screenshot is unreadable or too small")
    step = max(1, image.width() // 64)
    colours = {image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)}
    if len(colours) < 16:
        raise SelfTestFailure(f"{path}: the screenshot is nearly blank ({len(colours)} colours)")
    return f"{path.name} {image.width()}x{image.height()}, {len(colours)} colours sampled"


def main(gui: bool = False, keep: str | None = None, device: str = "cpu", engine: Any = None) -> int:
    """Command-line entry: print the report line by line, return the exit code."""
    report = run_self_test(workdir=keep, gui=gui, device=device, echo=lambda line: print(line, flush=True), engine=engine)
    return report.exit_code
