"""`segment` and `evaluate` on DICOM folders (``--series``) and on 2D pictures: issue #6's input kinds.

The DICOM series are written with known geometry (tests/dicom_fixtures.py), so an output on the
wrong series, or with spacing, origin or direction lost on the way, shows as a mismatch with
both the loader's geometry and the geometry the files were written with.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer.cli import main
from medviewer.io.loader import load_volume

pytest.importorskip("pydicom")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_fixtures import rotation, write_series

UID_A = "1.2.826.0.1.3680043.8.498.101"
UID_B = "1.2.826.0.1.3680043.8.498.202"
GEOMETRY_A = {"spacing": (0.8, 0.9, 2.5), "origin": (-100.0, -120.0, 30.0), "direction": np.eye(3)}
GEOMETRY_B = {"spacing": (1.1, 0.7, 3.0), "origin": (5.0, -6.5, 7.25), "direction": rotation("z", 30) @ rotation("x", 10)}


def blob(shape, block) -> np.ndarray:
    """A bright block (value 400) in a dark volume: region growing from its middle finds exactly the block.

    Blocks are at least 5 voxels thick so the seed's 5-voxel neighbourhood (the plugin's statistics)
    stays inside the block.
    """
    array = np.zeros(shape, np.int16)
    array[block] = 400
    return array


BLOB_A = blob((7, 14, 16), np.s_[1:6, 3:10, 4:12])
BLOB_B = blob((7, 12, 13), np.s_[1:6, 2:9, 3:10])


@pytest.fixture
def two_series(tmp_path):
    """One folder, two series of different size and geometry (B is oblique)."""
    folder = tmp_path / "study"
    write_series(folder, BLOB_A, series_uid=UID_A, description="Blob A", prefix="a", **GEOMETRY_A)
    write_series(folder, BLOB_B, series_uid=UID_B, description="Blob B", series_number=2, prefix="b", **GEOMETRY_B)
    return folder


def assert_written_grid(image: sitk.Image, volume, written: dict) -> None:
    """The output's grid is the loaded series' grid, and that is the grid the files were written with."""
    g = volume.geometry
    assert image.GetSize() == tuple(g.size_xyz)
    assert np.allclose(image.GetSpacing(), g.spacing, atol=1e-6)
    assert np.allclose(image.GetOrigin(), g.origin, atol=1e-6)
    assert np.allclose(np.reshape(image.GetDirection(), (3, 3)), g.direction_matrix, atol=1e-6)
    assert np.allclose(g.spacing, written["spacing"], atol=1e-5)
    assert np.allclose(g.origin, written["origin"], atol=1e-5)
    assert np.allclose(g.direction_matrix, written["direction"], atol=1e-5)


def write_truth(path: Path, mask: np.ndarray, written: dict) -> Path:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(written["spacing"])
    image.SetOrigin(written["origin"])
    image.SetDirection(np.asarray(written["direction"], float).ravel().tolist())
    sitk.WriteImage(image, str(path))
    return path


# -- segment ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uid", "array", "written", "seed"),
    [(UID_A, BLOB_A, GEOMETRY_A, "8,6,3"), (UID_B, BLOB_B, GEOMETRY_B, "6,5,3")],
    ids=["axial", "oblique"],
)
def test_segment_picks_the_series_and_keeps_its_grid(tmp_path, two_series, capsys, uid, array, written, seed):
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(two_series), str(out), "--series", uid, "--model", "region_growing", "--label", "7"]
    assert main([*argv, "--point", seed]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"wrote {out}: {int((array > 0).sum())} voxels")
    image = sitk.ReadImage(str(out))
    assert_written_grid(image, load_volume(two_series, uid), written)
    assert np.array_equal(sitk.GetArrayFromImage(image), np.where(array > 0, 7, 0))
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["series"] == uid and provenance["input"] == str(two_series.resolve())


def test_segment_mm_point_lands_on_the_oblique_series(tmp_path, two_series, capsys):
    """--mm on an oblique series: the LPS point goes through that series' direction, not the other's."""
    volume = load_volume(two_series, UID_B)
    x, y, z = volume.geometry.index_to_physical([6, 5, 3])
    out = tmp_path / "mm.nrrd"
    argv = ["segment", str(two_series), str(out), "--series", UID_B, "--model", "region_growing", "--mm"]
    assert main([*argv, "--point", f"{x:.4f},{y:.4f},{z:.4f}"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0, BLOB_B > 0)


def test_segment_without_series_lists_the_series_and_writes_nothing(tmp_path, two_series, capsys):
    out = tmp_path / "never.nii.gz"
    assert main(["segment", str(two_series), str(out), "--model", "region_growing", "--point", "8,6,3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"medviewer segment: error: {two_series}: 2 series found")
    assert UID_A in err and UID_B in err and "Blob A" in err and "Blob B" in err and "--series" in err
    assert main(["segment", str(two_series), str(out), "--series", "9.9.9", "--model", "region_growing",
                 "--point", "8,6,3"]) == 1
    err = capsys.readouterr().err
    assert "'9.9.9'" in err and UID_A in err and UID_B in err
    assert list(tmp_path.glob("never*")) == [] and list(tmp_path.glob(".never*")) == []


@pytest.mark.parametrize("suffix", [".png", ".nii.gz"])
def test_segment_a_2d_image_as_a_one_slice_volume(tmp_path, capsys, suffix):
    picture = np.zeros((20, 30), np.uint8)
    picture[5:12, 8:20] = 200
    image = sitk.GetImageFromArray(picture)
    if suffix == ".nii.gz":
        image.SetSpacing((0.5, 0.75))
    source = tmp_path / f"picture{suffix}"
    sitk.WriteImage(image, str(source))
    volume = load_volume(source)
    assert volume.array.shape == (1, 20, 30)

    out = tmp_path / "picture_labels.nrrd"
    argv = ["segment", str(source), str(out), "--model", "region_growing"]
    assert main([*argv, "--box", "6,4,22,14", "--slice", "0"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    result = sitk.ReadImage(str(out))
    assert result.GetSize() == (30, 20, 1)
    assert np.allclose(result.GetSpacing(), volume.geometry.spacing)
    assert np.array_equal(sitk.GetArrayFromImage(result)[0] > 0, picture > 0)

    clicked = tmp_path / "clicked.nii.gz"
    assert main(["segment", str(source), str(clicked), "--model", "region_growing", "--point", "10,7,0"]) == 0
    capsys.readouterr()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(clicked)))[0] > 0, picture > 0)


# -- evaluate -----------------------------------------------------------------------------------------------
def test_evaluate_a_dicom_series_with_series_key(tmp_path, two_series, capsys):
    truth = write_truth(tmp_path / "truth_b.nii.gz", BLOB_B > 0, GEOMETRY_B)
    argv = ["evaluate", str(two_series), str(truth), "--model", "region_growing", "--prompt", "box3d"]
    assert main([*argv, "--series", UID_B, "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    (case,) = report["cases"]
    assert case["image"] == str(two_series) and case["objects"][0]["rounds"][0]["dice"] == 1.0

    # the other series' grid does not match this ground truth: refused, naming the file
    assert main([*argv, "--series", UID_A]) == 1
    assert "truth_b.nii.gz" in capsys.readouterr().err
    assert main(argv) == 1  # two series and no --series
    err = capsys.readouterr().err
    assert "2 series found" in err and UID_B in err


def test_evaluate_folder_mode_takes_dicom_sub_folders(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    (dataset / "labels").mkdir(parents=True)
    write_series(dataset / "images" / "case.a", BLOB_A, series_uid=UID_A, **GEOMETRY_A)
    write_truth(dataset / "labels" / "case.a.nii.gz", BLOB_A > 0, GEOMETRY_A)  # the dot is part of the name
    write_series(dataset / "images" / "case_b", BLOB_B, series_uid=UID_B, **GEOMETRY_B)
    wider = np.zeros(BLOB_B.shape, bool)
    wider[1:6, 2:9, 3:12] = True  # two columns of background beyond the block: region growing misses them
    write_truth(dataset / "labels" / "case_b_wider.nrrd", wider, GEOMETRY_B)  # <folder>_<object>: a binary mask
    write_series(dataset / "images" / "unlabelled", BLOB_A)
    argv = ["evaluate", str(dataset), "--model", "region_growing", "--prompt", "box3d", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "unlabelled: no ground truth found, skipped" in captured.err
    report = json.loads(captured.out)
    assert [Path(c["image"]).name for c in report["cases"]] == ["case.a", "case_b"]
    assert [o["name"] for c in report["cases"] for o in c["objects"]] == ["label 1", "wider"]
    finals = [o["rounds"][-1]["dice"] for c in report["cases"] for o in c["objects"]]
    found, wanted = int((BLOB_B > 0).sum()), int(wider.sum())
    assert finals == pytest.approx([1.0, 2 * found / (found + wanted)])
    assert report["skipped"] == [str(dataset / "images" / "unlabelled")]


def test_evaluate_folder_mode_names_a_bad_series_folder(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    (dataset / "labels").mkdir(parents=True)
    mixed = dataset / "images" / "mixed"
    write_series(mixed, BLOB_A, series_uid=UID_A, prefix="a", **GEOMETRY_A)
    write_series(mixed, BLOB_B, series_uid=UID_B, prefix="b", **GEOMETRY_B)
    write_truth(dataset / "labels" / "mixed.nii.gz", BLOB_A > 0, GEOMETRY_A)
    assert main(["evaluate", str(dataset), "--model", "region_growing"]) == 1
    err = capsys.readouterr().err
    assert str(mixed) in err and "2 series found" in err
