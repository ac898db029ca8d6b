"""`medviewer models` and `medviewer segment`: the GUI's registry, engine and plugins, headless."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer.cli import main
from medviewer.io.loader import load_volume

CT_VERTEBRA_BOX = (40, 3, 80, 42)  # CT_small.dcm (128 x 128, one slice): i0, j0, i1, j1 around the vertebral body
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-12.0, 30.5, 100.0)
DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # i and j swapped: index != LPS axis order


@pytest.fixture(scope="module")
def ct_small():
    pydicom = pytest.importorskip("pydicom")
    return pydicom.data.get_testdata_file("CT_small.dcm")


@pytest.fixture
def blob_volume(tmp_path):
    """A bright block in a dark, noise-free volume with non-trivial geometry; returns (path, expected mask)."""
    array = np.zeros((8, 20, 24), np.int16)
    array[1:7, 5:12, 6:15] = 300
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    path = tmp_path / "blob.nrrd"
    sitk.WriteImage(image, str(path))
    return path, array > 0


def read_labels(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def assert_same_grid(image, volume):
    g = volume.geometry
    assert image.GetSize() == tuple(g.size_xyz)
    assert np.allclose(image.GetSpacing(), g.spacing)
    assert np.allclose(image.GetOrigin(), g.origin)
    assert np.allclose(np.reshape(image.GetDirection(), (3, 3)), g.direction_matrix)


def run_fails(argv, capsys, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medviewer segment: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_models_json_lists_plugins_with_status(capsys):
    assert main(["models", "--json"]) == 0
    cards = {card["id"]: card for card in json.loads(capsys.readouterr().out)}
    assert cards["litemedsam"]["status"] == "available"
    assert cards["litemedsam"]["dims"] == ["2d"] and "box" in cards["litemedsam"]["prompts"]
    assert cards["litemedsam"]["input_size"] == [256, 256]
    assert cards["sam"]["status"] == "available (choose a checkpoint file)"
    assert cards["sam"]["checkpoint"]["kind"] == "user_file"
    assert cards["region_growing"]["checkpoint"]["rule"] == "no checkpoint needed"
    assert main(["models"]) == 0
    assert "litemedsam  [available]" in capsys.readouterr().out


def test_litemedsam_box_voxel_and_mm_agree(tmp_path, ct_small, capsys):
    volume = load_volume(ct_small)
    i0, j0, i1, j1 = CT_VERTEBRA_BOX
    out = tmp_path / "vertebra.nii.gz"
    argv = ["segment", ct_small, str(out), "--model", "litemedsam", "--device", "cpu", "--label", "3"]
    assert main([*argv, "--box", f"{i0},{j0},{i1},{j1}", "--slice", "0"]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith(f"wrote {out}") and "mL" in summary and "score" in summary
    image, labels = read_labels(out)
    assert_same_grid(image, volume)
    assert set(np.unique(labels)) == {0, 3}
    mask = labels[0] == 3
    assert 200 < mask.sum() < 1600  # the vertebral body, not the box and not a speck
    rows, cols = np.nonzero(mask)
    assert rows.min() >= j0 - 1 and rows.max() <= j1 + 1 and cols.min() >= i0 - 1 and cols.max() <= i1 + 1

    provenance = json.loads((tmp_path / "vertebra.nii.gz.provenance.json").read_text())
    assert provenance["model"]["id"] == "litemedsam" and provenance["model"]["version"]
    assert len(provenance["model"]["checkpoint_sha256"]) == 64
    assert provenance["device"] == "cpu" and provenance["voxels"] == int(mask.sum())
    box = provenance["prompts"][0]
    assert box["voxel_ijk"] == [[i0, j0, 0], [i1, j1, 0]]
    assert np.allclose(box["physical_lps_mm"][1], volume.geometry.index_to_physical([i1, j1, 0]), atol=1e-3)

    # The same box in LPS millimetres gives the same mask.
    a = volume.geometry.index_to_physical([i0, j0, 0])
    b = volume.geometry.index_to_physical([i1, j1, 0])
    out_mm = tmp_path / "vertebra_mm.nii.gz"
    corners = ",".join(f"{v:.4f}" for v in (*a, *b))
    argv_mm = ["segment", ct_small, str(out_mm), "--model", "litemedsam", "--device", "cpu", "--label", "3"]
    assert main([*argv_mm, "--mm", "--box", corners]) == 0
    assert np.array_equal(read_labels(out_mm)[1], labels)
    assert json.loads((tmp_path / "vertebra_mm.nii.gz.provenance.json").read_text())["coordinates_given_in"] == "LPS mm"


def test_region_growing_point_finds_the_blob(tmp_path, blob_volume, capsys):
    path, expected = blob_volume
    volume = load_volume(path)
    out = tmp_path / "blob_labels.nrrd"
    assert main(["segment", str(path), str(out), "--model", "region_growing", "--point", "10,8,4"]) == 0
    assert "wrote" in capsys.readouterr().out
    image, labels = read_labels(out)
    assert_same_grid(image, volume)
    assert np.array_equal(labels > 0, expected)
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["prompts"][0]["labels"] == [1]
    assert provenance["model"]["checkpoint_sha256"] is None

    # --mm: the same click in LPS millimetres.
    x, y, z = volume.geometry.index_to_physical([10, 8, 4])
    out_mm = tmp_path / "blob_mm.nii.gz"
    argv = ["segment", str(path), str(out_mm), "--model", "region_growing", "--mm"]
    assert main([*argv, "--point", f"{x},{y},{z},+"]) == 0
    assert np.array_equal(read_labels(out_mm)[1] > 0, expected)


def test_region_growing_2d_box_with_propagation(tmp_path, blob_volume, capsys):
    path, expected = blob_volume
    out = tmp_path / "propagated.nii.gz"
    argv = ["segment", str(path), str(out), "--model", "region_growing", "--box", "4,3,16,13", "--slice", "3"]
    assert main([*argv, "--propagate"]) == 0
    capsys.readouterr()
    assert np.array_equal(read_labels(out)[1] > 0, expected)  # the seed slice carried through the block
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["propagate"] is True and "3" in provenance["slice_scores"]


def test_errors_leave_no_output(tmp_path, ct_small, blob_volume, capsys):
    path, _ = blob_volume
    out = tmp_path / "never.nii.gz"
    run_fails(["segment", str(path), str(out), "--model", "nope", "--point", "1,1,1"], capsys, "no model 'nope'")
    run_fails(
        ["segment", str(path), str(out), "--model", "region_growing", "--point", "10,8,9"],
        capsys, "outside the volume", "k=9",
    )
    run_fails(
        ["segment", ct_small, str(out), "--model", "sam", "--box", "40,3,80,42", "--slice", "0"], capsys, "--checkpoint"
    )
    run_fails(
        ["segment", ct_small, str(out), "--model", "sam", "--checkpoint", str(tmp_path / "missing.pth"),
         "--box", "40,3,80,42", "--slice", "0"],
        capsys, "checkpoint file not found",
    )
    run_fails(["segment", str(path), str(out), "--model", "region_growing", "--box", "1,1,5,5"], capsys, "--slice")
    argv = ["segment", str(path), str(path), "--model", "region_growing", "--point", "1,1,1", "--force"]
    run_fails(argv, capsys, "input")
    assert not out.exists() and not list(tmp_path.glob("never*")) and not list(tmp_path.glob(".never*"))

    out.write_bytes(b"keep")
    run_fails(["segment", str(path), str(out), "--model", "region_growing", "--point", "10,8,4"], capsys, "--force")
    assert out.read_bytes() == b"keep"


def test_sagittal_box_maps_view_axes_to_the_volume(tmp_path, blob_volume, capsys):
    """--axis sagittal: slice i, box X = j, Y = k (the engine's array[:, :, i] with x = j, y = k)."""
    path, expected = blob_volume
    out = tmp_path / "sagittal.nii.gz"
    argv = ["segment", str(path), str(out), "--model", "region_growing", "--axis", "sagittal"]
    assert main([*argv, "--box", "3,0,14,7", "--slice", "10"]) == 0
    assert "on cpu" in capsys.readouterr().out
    labels = read_labels(out)[1] > 0
    assert np.array_equal(labels[:, :, 10], expected[:, :, 10]) and labels[:, :, 10].any()
    assert not labels[:, :, :10].any() and not labels[:, :, 11:].any()


def test_medlsam_box3d(tmp_path, ct_small, capsys):
    volume = load_volume(ct_small)
    i0, j0, i1, j1 = CT_VERTEBRA_BOX
    out = tmp_path / "medlsam.nii.gz"
    assert main(["segment", ct_small, str(out), "--model", "medlsam", "--box3d", f"{i0},{j0},0,{i1},{j1},0"]) == 0
    capsys.readouterr()
    image, labels = read_labels(out)
    assert_same_grid(image, volume)
    mask = labels[0] > 0
    assert 200 < mask.sum() < 2000
    assert mask[j0 : j1 + 1, i0 : i1 + 1].sum() >= 0.85 * mask.sum()  # MedLSAM grows its box a little
    prompt = json.loads(out.with_name(out.name + ".provenance.json").read_text())["prompts"][0]
    assert prompt["kind"] == "box_3d" and prompt["voxel_ijk"] == [[i0, j0, 0], [i1, j1, 0]]
