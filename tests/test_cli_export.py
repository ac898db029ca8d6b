"""`medviewer export`: every format from the command line, metadata options, safety rules."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_fixtures import write_series  # noqa: E402

SPACING = (0.8, 0.9, 3.0)
ORIGIN = (-5.0, 7.25, 100.0)


def labels_array():
    labels = np.zeros((4, 12, 14), np.uint8)
    labels[1:3, 2:6, 3:8] = 1
    labels[2:4, 7:11, 8:12] = 2
    return labels


@pytest.fixture
def case(tmp_path):
    dicom = tmp_path / "ct"
    write_series(dicom, np.full((4, 12, 14), 40, np.int16), spacing=SPACING, origin=ORIGIN)
    image = sitk.GetImageFromArray(labels_array())
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    labels = tmp_path / "labels.nii.gz"
    sitk.WriteImage(image, str(labels))
    return dicom, labels


def test_export_seg_nrrd_with_names_and_colours(tmp_path, case, capsys):
    import nrrd

    dicom, labels = case
    out = tmp_path / "out.seg.nrrd"
    assert main(["export", str(labels), str(out), "--reference", str(dicom), "--names", "liver,2=spleen",
                 "--colors", "2=#102030"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data, header = nrrd.read(str(out))
    np.testing.assert_array_equal(data.transpose(2, 1, 0), labels_array())
    assert header["Segment0_Name"] == "liver" and header["Segment1_Name"] == "spleen"
    assert header["Segment0_Color"] == "0.866667 0.509804 0.396078"  # liver's standard colour
    assert header["Segment1_Color"] == "0.0627451 0.12549 0.188235"
    np.testing.assert_allclose(header["space origin"], ORIGIN, atol=1e-4)


def test_export_every_format_from_the_command_line(tmp_path, case):
    import highdicom as hd

    dicom, labels = case
    for name in ("a.nii.gz", "a.nrrd", "a.mha", "a.dcm", "a.stl", "a.csv", "a.json", "a.txt"):
        arguments = ["export", str(labels), str(tmp_path / name), "--reference", str(dicom), "--names", "liver,kidney"]
        assert main(arguments) == 0, name
    seg = hd.seg.segread(tmp_path / "a.dcm")
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["liver", "kidney"]
    assert (tmp_path / "a_1_liver.stl").exists() and (tmp_path / "a_2_kidney.stl").exists()
    assert "liver,4" in (tmp_path / "a.csv").read_text().replace('"', "")
    image = sitk.ReadImage(str(tmp_path / "a.nrrd"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels_array())
    # DICOM SEG back in: export it again as a label map on the same grid
    assert main(["export", str(tmp_path / "a.dcm"), str(tmp_path / "back.nii.gz"), "--reference", str(dicom)]) == 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "back.nii.gz"))), labels_array())


def test_export_refuses_overwrite_without_force_and_never_touches_inputs(tmp_path, case, capsys):
    dicom, labels = case
    out = tmp_path / "x.nii.gz"
    assert main(["export", str(labels), str(out)]) == 0
    assert main(["export", str(labels), str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(labels), str(out), "--force"]) == 0
    before = labels.read_bytes()
    assert main(["export", str(labels), str(labels), "--force"]) == 1
    assert labels.read_bytes() == before
    source_file = sorted(dicom.iterdir())[0]
    before = source_file.read_bytes()
    assert main(["export", str(labels), str(source_file), "--reference", str(dicom), "--format", "nii.gz", "--force"]) == 1
    assert source_file.read_bytes() == before


def test_dicom_seg_needs_a_dicom_reference(tmp_path, case, capsys):
    dicom, labels = case
    assert main(["export", str(labels), str(tmp_path / "s.dcm"), "--reference", str(labels)]) == 1
    assert "not from DICOM" in capsys.readouterr().err
    assert main(["export", str(labels), str(tmp_path / "s.dcm")]) == 1


def test_label_file_and_provenance_sidecar(tmp_path, case):
    dicom, labels = case
    label_file = tmp_path / "names.txt"
    label_file.write_text('0 0 0 0 0 0 0 "Clear Label"\n1 255 0 0 1 1 1 "aorta"\n2 0 255 0 1 1 1 "vein"\n')
    out = tmp_path / "out.seg.nrrd"
    assert main(["export", str(labels), str(out), "--label-file", str(label_file), "--provenance"]) == 0
    from medviewer.io.segnrrd import read_seg_nrrd

    content = read_seg_nrrd(out)
    assert [(s.name, s.color) for s in content.segments] == [("aorta", (255, 0, 0)), ("vein", (0, 255, 0))]
    assert (tmp_path / "out.seg.nrrd.provenance.json").exists()


def test_export_runs_without_qt_or_vtk_for_non_mesh_formats(tmp_path, case):
    dicom, labels = case
    code = (
        "import sys; from medviewer.cli import main;"
        f"rc = main(['export', {str(labels)!r}, {str(tmp_path / 'q.seg.nrrd')!r}, '--reference', {str(dicom)!r}]);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'vtkmodules', 'vtk')];"
        "print(rc, bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"
