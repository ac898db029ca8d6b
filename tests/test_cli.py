"""Command line: --version, info (text and JSON) and convert with exact geometry."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer import __version__
from medviewer.cli import main


def write_reference(path):
    image = sitk.GetImageFromArray(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5))
    image.SetSpacing((0.8, 0.9, 3.0))
    image.SetOrigin((-5.0, 7.25, 100.0))
    image.SetDirection((0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    sitk.WriteImage(image, str(path))
    return image


def test_version_from_installed_entry_point():
    result = subprocess.run([sys.executable, "-m", "medviewer", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"medviewer {__version__}"


def test_info_json_matches_simpleitk(tmp_path, capsys):
    path = tmp_path / "ref.nii.gz"
    write_reference(path)
    reference = sitk.ReadImage(str(path))
    assert main(["info", str(path), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "image"
    assert tuple(described["size"]) == reference.GetSize()
    np.testing.assert_allclose(described["spacing"], reference.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(described["origin"], reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(described["direction"], reference.GetDirection(), atol=1e-9)
    assert described["dtype"] == "int16"


def test_info_text(tmp_path, capsys):
    path = tmp_path / "ref.nrrd"
    write_reference(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "size      (5, 4, 3)" in out and "spacing   (0.8, 0.9, 3) mm" in out


@pytest.mark.parametrize("target", ["out.nrrd", "out.mha", "out.nii"])
def test_convert_keeps_geometry(tmp_path, capsys, target):
    source = tmp_path / "in.nii.gz"
    reference = write_reference(source)
    assert main(["convert", str(source), str(tmp_path / target)]) == 0
    converted = sitk.ReadImage(str(tmp_path / target))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(reference))
    for name in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(converted, name)(), getattr(reference, name)(), atol=1e-6)
    assert "wrote" in capsys.readouterr().out


def test_convert_real_dicom_ct(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm")
    assert main(["convert", source, str(tmp_path / "ct.nii.gz")]) == 0
    converted = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    reference = sitk.ReadImage(source)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(converted.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(converted.GetSpacing()[:2], reference.GetSpacing()[:2], atol=1e-6)
    np.testing.assert_allclose(converted.GetDirection(), reference.GetDirection(), atol=1e-6)
    ds = pydicom.dcmread(source)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(converted)[0], hu)


def test_errors_are_one_line_with_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "Traceback" not in err
    assert main(["convert", str(bad), str(tmp_path / "x.nrrd")]) == 1
    assert not (tmp_path / "x.nrrd").exists()


def test_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    source = tmp_path / "in.nrrd"
    write_reference(source)
    before = source.read_bytes()
    assert main(["convert", str(source), str(source)]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_dicom_folder_with_two_series(tmp_path, capsys):
    from dicom_fixtures import ramp_volume, rotation, write_series

    folder = tmp_path / "study"
    axial = ramp_volume((5, 6, 7))
    oblique = ramp_volume((4, 6, 7), offset=500)
    direction = rotation("x", 20) @ rotation("z", 35)
    write_series(folder / "a", axial, spacing=(0.7, 0.7, 2.0), series_uid="1.2.3.1", description="Axial", series_number=1)
    write_series(
        folder / "b", oblique, spacing=(0.9, 0.8, 3.0), origin=(5.0, -7.0, 11.0), direction=direction,
        series_uid="1.2.3.2", description="Oblique", series_number=2,
    )

    assert main(["info", str(folder), "--json"]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert [(s["description"], s["slices"], s["dimensions"]) for s in series] == [
        ("Axial", 5, [7, 6, 5]),
        ("Oblique", 4, [7, 6, 4]),
    ]

    out = tmp_path / "out.nrrd"
    assert main(["convert", str(folder), str(out)]) == 1
    err = capsys.readouterr().err
    assert "Axial" in err and "Oblique" in err and "--series" in err
    assert not out.exists()

    assert main(["convert", str(folder), str(out), "--series", "1.2.3.2"]) == 0
    converted = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(converted), oblique)
    np.testing.assert_allclose(converted.GetSpacing(), (0.9, 0.8, 3.0), atol=1e-6)
    np.testing.assert_allclose(converted.GetOrigin(), (5.0, -7.0, 11.0), atol=1e-6)
    np.testing.assert_allclose(np.reshape(converted.GetDirection(), (3, 3)), direction, atol=1e-6)
