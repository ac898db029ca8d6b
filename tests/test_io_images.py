"""SimpleITK-backed readers and writers: exact geometry round trips and clear failures."""

import numpy as np
import pytest
import SimpleITK as sitk

from medviewer.io import (
    CorruptFileError,
    MedViewerIOError,
    UnsupportedFormatError,
    WriteError,
    load_labels,
    load_volume,
    read_image,
    write_array,
    write_volume,
)
from medviewer.model import Geometry, Volume

OBLIQUE = (
    0.8660254037844387, -0.3535533905932738, 0.3535533905932737,
    0.0, 0.7071067811865476, 0.7071067811865475,
    -0.5, -0.6123724356957946, 0.6123724356957946,
)


def make_volume(dtype=np.int16, shape=(6, 9, 11)):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    array = (rng.integers(info.min, info.max, shape) if info else rng.normal(size=shape)).astype(dtype)
    geometry = Geometry(shape, (0.731, 0.618, 2.7), (-101.25, 33.5, 1234.125), OBLIQUE)
    return Volume(array, geometry)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_write_read_round_trip_is_exact(tmp_path, suffix, dtype):
    volume = make_volume(dtype)
    path = write_volume(tmp_path / f"vol{suffix}", volume)
    back = read_image(path)
    assert back.dtype == volume.dtype
    np.testing.assert_array_equal(back.array, volume.array)
    g, h = volume.geometry, back.geometry
    assert h.shape == g.shape
    np.testing.assert_allclose(h.spacing, g.spacing, atol=1e-6)
    np.testing.assert_allclose(h.origin, g.origin, atol=1e-6)
    np.testing.assert_allclose(h.direction, g.direction, atol=1e-6)
    assert not list(tmp_path.glob(".*partial*")), "temporary file left behind"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_equals_simpleitk_reading(tmp_path, suffix):
    path = tmp_path / f"ref{suffix}"
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.5, 0.75, 3.0))
    image.SetOrigin((10.0, -20.0, 30.5))
    image.SetDirection(OBLIQUE)
    sitk.WriteImage(image, str(path))
    reference = sitk.ReadImage(str(path))
    volume = load_volume(path)
    assert volume.geometry.size_xyz == reference.GetSize()
    np.testing.assert_allclose(volume.geometry.spacing, reference.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.origin, reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(volume.geometry.direction, reference.GetDirection(), atol=1e-9)
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        np.testing.assert_allclose(volume.geometry.index_to_physical(ijk), reference.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))


def test_nhdr_with_separate_data_file(tmp_path):
    volume = make_volume(np.int16)
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.geometry.spacing)
    sitk.WriteImage(image, str(tmp_path / "detached.nhdr"))
    assert (tmp_path / "detached.raw").exists() or list(tmp_path.glob("detached.*raw*"))
    np.testing.assert_array_equal(load_volume(tmp_path / "detached.nhdr").array, volume.array)
    for data_file in tmp_path.glob("detached.*raw*"):
        data_file.unlink()
    with pytest.raises(CorruptFileError, match="detached.nhdr"):
        load_volume(tmp_path / "detached.nhdr")


def test_png_gray_and_color(tmp_path):
    gray = np.random.default_rng(1).integers(0, 255, (20, 30)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(gray), str(tmp_path / "gray.png"))
    volume = load_volume(tmp_path / "gray.png")
    assert volume.shape == (1, 20, 30) and volume.color is None
    np.testing.assert_array_equal(volume.array[0], gray)

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[5:10, :, 1] = 100
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    colour = load_volume(tmp_path / "rgb.png")
    assert colour.shape == (1, 20, 30)
    assert colour.color.shape == (1, 20, 30, 3)
    np.testing.assert_array_equal(colour.color[0], rgb)
    assert colour.array[0, 0, 0] == round(0.299 * 200)
    assert colour.array[0, 6, 0] == round(0.299 * 200 + 0.587 * 100)


def test_4d_image_is_refused_with_a_clear_message(tmp_path):
    image = sitk.Image([4, 4, 3, 5], sitk.sitkInt16)
    sitk.WriteImage(image, str(tmp_path / "fourd.nii.gz"))
    with pytest.raises(UnsupportedFormatError, match="4D image"):
        load_volume(tmp_path / "fourd.nii.gz")


def test_lying_nifti_header_does_not_exhaust_memory(tmp_path):
    header = bytearray(352)
    header[0:4] = (348).to_bytes(4, "little")
    dims = [3, 30000, 30000, 30000, 1, 1, 1, 1]
    for index, value in enumerate(dims):
        header[40 + 2 * index : 42 + 2 * index] = value.to_bytes(2, "little", signed=True)
    header[70:72] = (4).to_bytes(2, "little")  # int16
    header[72:74] = (16).to_bytes(2, "little")
    header[76:108] = np.array([1, 1, 1, 1, 1, 1, 1, 1], np.float32).tobytes()
    header[108:112] = np.float32(352).tobytes()
    header[344:348] = b"n+1\0"
    path = tmp_path / "huge.nii"
    path.write_bytes(bytes(header) + b"\0" * 64)
    with pytest.raises(CorruptFileError, match="huge.nii"):
        load_volume(path)


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("empty.nii.gz", b"", CorruptFileError),
        ("junk.nii", b"this is not an image at all" * 20, CorruptFileError),
        ("junk.nrrd", b"NRRD0004\ntype: banana\n\n", CorruptFileError),
        ("notes.txt", b"hello", UnsupportedFormatError),
    ],
)
def test_bad_files_raise_typed_errors_naming_the_file(tmp_path, name, content, error):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error) as caught:
        load_volume(path)
    assert name in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_missing_path():
    with pytest.raises(MedViewerIOError, match="no such file"):
        load_volume("/nonexistent/scan.nii.gz")


def test_writer_refuses_unknown_suffix_and_missing_folder(tmp_path):
    volume = make_volume()
    with pytest.raises(WriteError, match="cannot write"):
        write_volume(tmp_path / "out.png", volume)
    with pytest.raises(WriteError, match="does not exist"):
        write_volume(tmp_path / "missing" / "out.nii.gz", volume)
    with pytest.raises(WriteError, match="does not match"):
        write_array(tmp_path / "x.nrrd", np.zeros((2, 2, 2)), volume.geometry)


def test_load_labels_checks_the_grid(tmp_path):
    volume = make_volume()
    labels = np.zeros(volume.shape, np.uint8)
    labels[2, 3:5, 4:8] = 3
    write_array(tmp_path / "labels.nii.gz", labels, volume.geometry)
    loaded = load_labels(tmp_path / "labels.nii.gz", volume)
    np.testing.assert_array_equal(loaded.array, labels)
    shifted = volume.geometry.with_shape(volume.shape)
    shifted = Geometry(shifted.shape, shifted.spacing, (0.0, 0.0, 0.0), shifted.direction)
    write_array(tmp_path / "shifted.nii.gz", labels, shifted)
    with pytest.raises(MedViewerIOError, match="origin"):
        load_labels(tmp_path / "shifted.nii.gz", volume)
