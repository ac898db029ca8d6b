"""DICOM reader: slice ordering, geometry, rescale, refusals and error reporting."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from dicom_fixtures import (
    ramp_volume,
    rotation,
    write_enhanced_ct,
    write_junk,
    write_series,
)
from medviewer.io.dicom import DicomSeries, load_dicom, load_series, scan_dicom
from medviewer.io.errors import (
    CorruptFileError,
    InconsistentSeriesError,
    MedViewerIOError,
    NoImageDataError,
    SeriesSelectionError,
)
from medviewer.jobs import JobCancelled, JobControl

SHARED_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def bundled(name: str) -> str:
    """A pydicom test file shipped in the wheel; never triggers a download."""
    path = PYDICOM_FILES / name
    if not path.exists():
        pytest.skip(f"{name} is not bundled with this pydicom")
    return str(path)


def sitk_series(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader_GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_same_as_sitk(volume, image: sitk.Image, tol: float = 1e-6):
    g = volume.geometry
    assert g.size_xyz == image.GetSize()
    np.testing.assert_allclose(g.spacing, image.GetSpacing(), atol=tol)
    np.testing.assert_allclose(g.origin, image.GetOrigin(), atol=tol)
    np.testing.assert_allclose(g.direction, image.GetDirection(), atol=tol)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))


OBLIQUE = rotation("x", 30) @ rotation("y", -30)


# -- real files shipped with pydicom -------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
    ],
)
def test_lossless_variants_decode_to_the_same_pixels(name):
    reference = load_dicom(bundled("MR_small.dcm"))
    volume = load_dicom(bundled(name))
    assert volume.array.dtype == reference.array.dtype
    assert volume.array.dtype.isnative
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.geometry == reference.geometry


def test_ct_small_has_hounsfield_units_and_simpleitk_geometry():
    path = bundled("CT_small.dcm")
    volume = load_dicom(path)
    assert volume.info.rescale_applied and volume.info.units == "HU"
    assert volume.dtype == np.int16
    raw = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(volume.array[0], raw.astype(np.int32) - 1024)
    assert_same_as_sitk(volume, sitk.ReadImage(path))
    assert volume.info.modality == "CT"


def test_single_2d_image_uses_slice_thickness():
    volume = load_dicom(bundled("MR_small.dcm"))
    assert volume.shape == (1, 64, 64)
    assert volume.geometry.spacing == pytest.approx((0.3125, 0.3125, 0.8))
    assert volume.info.window_presets[0].name == "DICOM 1"
    assert volume.info.window_presets[0].center == 600


def test_truncated_file_is_corrupt():
    with pytest.raises(CorruptFileError) as info:
        load_dicom(bundled("MR_truncated.dcm"))
    assert "MR_truncated.dcm" in str(info.value)


def test_rgb_image_keeps_colour_and_gives_luminance():
    path = bundled("SC_rgb_rle_2frame.dcm")
    volume = load_dicom(path)
    rgb = pydicom.dcmread(path).pixel_array
    assert volume.color is not None and volume.color.dtype == np.uint8
    np.testing.assert_array_equal(volume.color, rgb)
    expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    np.testing.assert_array_equal(volume.array, expected)
    assert any("multi-frame image without per-frame positions" in w for w in volume.info.warnings)


def test_rtdose_frames_are_placed_by_grid_frame_offsets():
    path = bundled("rtdose.dcm")
    volume = load_dicom(path)
    image = sitk.ReadImage(path)  # GDCM also places RT Dose frames by GridFrameOffsetVector
    scaling = float(pydicom.dcmread(path, stop_before_pixels=True).DoseGridScaling)
    assert volume.dtype == np.float32 and volume.info.rescale_applied
    assert volume.geometry.spacing == pytest.approx(image.GetSpacing())
    assert volume.geometry.origin == pytest.approx(image.GetOrigin())
    assert volume.geometry.direction == pytest.approx(image.GetDirection())
    expected = (sitk.GetArrayFromImage(image).astype(np.float64) * scaling).astype(np.float32)
    np.testing.assert_array_equal(volume.array, expected)


def test_sr_document_alone_is_no_image():
    with pytest.raises(NoImageDataError):
        scan_dicom(bundled("test-SR.dcm"))


# -- synthetic series: ordering and geometry -----------------------------------------------
def test_axial_series_with_shuffled_names_and_instance_numbers(tmp_path):
    values = ramp_volume((6, 7, 9), offset=-1000)
    write_series(tmp_path, values, rescale=(1.0, -1024.0), window=[(40, 400, "SOFT"), (-600, 1500, None)])
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    assert volume.dtype == np.int16
    assert volume.geometry.spacing == pytest.approx((0.8, 0.9, 2.5))
    assert volume.geometry.origin == pytest.approx((-100.0, -120.0, 30.0))
    assert volume.info.units == "HU" and volume.info.rescale_applied
    assert [(p.name, p.center, p.width) for p in volume.info.window_presets] == [
        ("SOFT", 40, 400),
        ("DICOM 2", -600, 1500),
    ]
    assert volume.info.warnings == []
    assert_same_as_sitk(volume, sitk_series(tmp_path))


def test_no_patient_identifiers_in_info(tmp_path):
    write_series(tmp_path, ramp_volume((2, 3, 4)))
    info = load_dicom(tmp_path).info
    text = repr(info)
    assert "Synthetic^Patient" not in text and "SYN001" not in text


def test_oblique_series_matches_simpleitk_and_physical_points(tmp_path):
    values = ramp_volume((5, 6, 7))
    spacing, origin = (0.7, 1.1, 3.0), (12.5, -40.25, 80.0)
    write_series(tmp_path, values, spacing, origin, OBLIQUE)
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    np.testing.assert_allclose(volume.geometry.direction_matrix, OBLIQUE, atol=1e-9)
    assert volume.geometry.is_oblique()
    assert_same_as_sitk(volume, sitk_series(tmp_path))
    # Voxel (i, j, k) = (3, 2, 4) must be where the writer put it, holding its value.
    i, j, k = 3, 2, 4
    expected = np.asarray(origin) + OBLIQUE @ (np.asarray(spacing) * (i, j, k))
    np.testing.assert_allclose(volume.geometry.index_to_physical((i, j, k)), expected, atol=1e-6)
    assert volume.value_at((i, j, k)) == values[k, j, i]


def test_slices_written_against_the_normal_are_sorted_along_it(tmp_path):
    # Slice k of the writer lies at z = -2k, i.e. descending along cross(row, col) = +z.
    values = ramp_volume((4, 3, 5))
    positions = [(0.0, 0.0, -2.0 * k) for k in range(4)]
    write_series(tmp_path, values, positions=positions, spacing=(1, 1, 2))
    volume = load_dicom(tmp_path)
    np.testing.assert_allclose(volume.geometry.direction_matrix, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(volume.array, values[::-1])
    assert volume.geometry.origin == pytest.approx((0.0, 0.0, -6.0))
    assert_same_as_sitk(volume, sitk_series(tmp_path))


def test_compressed_synthetic_series(tmp_path):
    values = ramp_volume((3, 8, 8))
    write_series(tmp_path, values, mutate=lambda ds, k: ds.compress(RLELossless))
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    assert volume.info.extra["transfer_syntaxes"] == ["RLE Lossless"]


# -- rescale and data types ------------------------------------------------------------------
def test_per_slice_rescale_with_fractional_slope_gives_float32(tmp_path):
    values = ramp_volume((3, 4, 5), offset=0).astype(np.float64)
    rescales = [(0.5, 0.0), (0.25, 10.0), (2.0, -3.0)]
    scaled = np.stack([np.rint((values[k] - b) / s) * s + b for k, (s, b) in enumerate(rescales)])
    write_series(tmp_path, scaled, rescale=rescales, stored_dtype=np.int16, modality="MR")
    volume = load_dicom(tmp_path)
    assert volume.dtype == np.float32
    np.testing.assert_allclose(volume.array, scaled, rtol=0, atol=1e-4)
    assert volume.info.extra["rescale"] == "per slice"


def test_integral_per_slice_intercepts_stay_integer(tmp_path):
    values = ramp_volume((3, 4, 5), offset=-500)
    write_series(tmp_path, values, rescale=[(1, -1024), (1, 0), (1, -2000)], stored_dtype=np.int32)
    volume = load_dicom(tmp_path)
    assert volume.dtype == np.int16
    np.testing.assert_array_equal(volume.array, values)


def test_unsigned_values_that_fit_become_int16_and_large_ones_int32(tmp_path):
    small = ramp_volume((2, 3, 4), dtype=np.uint16, offset=0)
    write_series(tmp_path / "a", small, modality="MR")
    assert load_dicom(tmp_path / "a").dtype == np.int16
    large = small.astype(np.int64) + 60000
    write_series(tmp_path / "b", large, rescale=(1, -1000), stored_dtype=np.uint16, modality="MR")
    volume = load_dicom(tmp_path / "b")
    assert volume.dtype == np.uint16 and volume.array.max() == large.max()
    wide = small.astype(np.int64) * 30 - 5  # negative and above 32767: needs int32
    wide[0, 0, 0], wide[0, 0, 1] = 40000, -5
    write_series(tmp_path / "c", wide, rescale=(1, -5), stored_dtype=np.uint16, modality="MR")
    volume = load_dicom(tmp_path / "c")
    assert volume.dtype == np.int32
    np.testing.assert_array_equal(volume.array, wide)


# -- refusals and repairs ----------------------------------------------------------------------
def test_missing_slice_is_filled_and_positions_stay_exact(tmp_path):
    values = ramp_volume((7, 4, 5), offset=-200)
    spacing, origin = (1.0, 1.0, 2.0), (0.0, 0.0, 10.0)
    write_series(tmp_path, values, spacing, origin, OBLIQUE, skip=[3])
    volume = load_dicom(tmp_path)
    assert volume.shape == values.shape
    assert volume.geometry.spacing[2] == pytest.approx(2.0)
    keep = [0, 1, 2, 4, 5, 6]
    np.testing.assert_array_equal(volume.array[keep], values[keep])
    assert np.all(volume.array[3] == values[keep].min())
    assert volume.info.extra["filled_slices"] == [3]
    assert any("non-uniform slice spacing" in w and "1 slice(s) probably missing" in w for w in volume.info.warnings)
    assert any("filled" in w for w in volume.info.warnings)
    point = np.asarray(origin) + OBLIQUE @ (np.asarray(spacing) * (1, 2, 5))
    np.testing.assert_allclose(volume.geometry.index_to_physical((1, 2, 5)), point, atol=1e-6)
    series = scan_dicom(tmp_path)[0]
    assert series.num_slices == 7 and any("missing" in w for w in series.warnings)


def test_irregular_spacing_is_refused(tmp_path):
    positions = [(0, 0, z) for z in (0.0, 1.0, 2.0, 3.5, 4.5)]
    write_series(tmp_path, ramp_volume((5, 3, 3)), positions=positions, spacing=(1, 1, 1))
    with pytest.raises(InconsistentSeriesError) as info:
        load_dicom(tmp_path)
    assert "irregular slice spacing" in str(info.value)
    assert "1.5 mm" in str(info.value)
    assert any("cannot be loaded" in w for w in scan_dicom(tmp_path)[0].warnings)


def test_small_position_round_off_is_tolerated(tmp_path):
    # Positions written with one decimal: 0.625 mm spacing rounds to 0.6/0.7 steps.
    positions = [(0, 0, round(0.625 * k, 1)) for k in range(8)]
    write_series(tmp_path, ramp_volume((8, 3, 3)), positions=positions, spacing=(1, 1, 0.625))
    volume = load_dicom(tmp_path)
    assert volume.geometry.spacing[2] == pytest.approx(4.4 / 7)
    assert volume.info.warnings == []


def test_gantry_tilt_is_refused_with_the_angle(tmp_path):
    write_series(tmp_path, ramp_volume((5, 4, 4)), tilt_deg=15.0)
    with pytest.raises(InconsistentSeriesError) as info:
        load_dicom(tmp_path)
    message = str(info.value)
    assert "gantry tilt of 15.00 degrees" in message
    assert "resampl" in message


def test_repeated_position_is_refused_naming_both_files(tmp_path):
    positions = [(0, 0, z) for z in (0.0, 1.0, 1.0, 2.0)]
    paths = write_series(tmp_path, ramp_volume((4, 3, 3)), positions=positions, spacing=(1, 1, 1), shuffle_names=False)
    with pytest.raises(InconsistentSeriesError) as info:
        load_dicom(tmp_path)
    message = str(info.value)
    assert "same position" in message
    assert paths[1].name in message and paths[2].name in message


def test_copied_file_is_ignored_with_a_warning(tmp_path):
    values = ramp_volume((3, 4, 4))
    paths = write_series(tmp_path / "a", values, shuffle_names=False)
    (tmp_path / "a" / "copies").mkdir()
    shutil.copy(paths[1], tmp_path / "a" / "copies" / "dup.dcm")
    volume = load_dicom(tmp_path / "a")
    np.testing.assert_array_equal(volume.array, values)
    assert any("copy of" in w for w in volume.info.warnings)


def test_slices_without_positions_stack_by_instance_number(tmp_path):
    values = ramp_volume((4, 3, 5))

    def strip(ds, k):
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.InstanceNumber = k + 1
        ds.SpacingBetweenSlices = "3.0"

    write_series(tmp_path, values, mutate=strip)
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    assert volume.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert volume.geometry.spacing[2] == 3.0
    assert any("InstanceNumber order" in w for w in volume.info.warnings)


def test_mixed_sizes_in_one_series_are_refused_by_load_series(tmp_path):
    write_series(tmp_path / "a", ramp_volume((2, 4, 4)))
    write_series(tmp_path / "b", ramp_volume((2, 5, 4)), origin=(0, 0, 500))
    first, second = scan_dicom(tmp_path / "a")[0], scan_dicom(tmp_path / "b")[0]
    merged = DicomSeries(**{**first.__dict__, "frames": first.frames + second.frames})
    with pytest.raises(InconsistentSeriesError, match="different sizes"):
        load_series(merged)


def test_monochrome1_is_kept_and_noted(tmp_path):
    write_series(tmp_path, ramp_volume((2, 3, 3)), mutate=lambda ds, k: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
    volume = load_dicom(tmp_path)
    assert volume.info.extra["photometric"] == "MONOCHROME1"
    assert any("MONOCHROME1" in w for w in volume.info.warnings)


def test_undecodable_pixel_data_names_file_and_transfer_syntax(tmp_path):
    write_series(tmp_path, ramp_volume((1, 4, 4)))
    path = next(tmp_path.glob("*.dcm"))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder exists
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CorruptFileError) as info:
        load_dicom(path)
    message = str(info.value)
    assert path.name in message and "MPEG2" in message and "no decoder" in message


# -- several series, scanning ------------------------------------------------------------------
def test_two_series_need_a_key(tmp_path):
    uid_a, uid_b = generate_uid(), generate_uid()
    write_series(tmp_path, ramp_volume((3, 4, 4)), series_uid=uid_a, description="Arterial", prefix="a", series_number=2)
    write_series(tmp_path, ramp_volume((2, 5, 6)), series_uid=uid_b, description="Venous", prefix="b", series_number=3)
    found = scan_dicom(tmp_path)
    assert [s.description for s in found] == ["Arterial", "Venous"]
    with pytest.raises(SeriesSelectionError) as info:
        load_dicom(tmp_path)
    assert "Arterial" in str(info.value) and "Venous" in str(info.value)
    assert [s.key for s in info.value.series] == [uid_a, uid_b]
    assert load_dicom(tmp_path, series_key=uid_b).shape == (2, 5, 6)
    assert load_dicom(tmp_path, series_key=uid_a).info.series_description == "Arterial"
    with pytest.raises(SeriesSelectionError):
        load_dicom(tmp_path, series_key="1.2.3.4")


def test_summary_line(tmp_path):
    write_series(tmp_path, ramp_volume((3, 4, 5)), spacing=(0.7, 0.7, 1.0), description="Abdomen")
    series = scan_dicom(tmp_path)[0]
    assert series.summary() == f"CT  'Abdomen'  5x4x3  0.7x0.7x1.0 mm  uid={series.key}"
    assert series.num_slices == 3 and series.slice_spacing == pytest.approx(1.0)
    assert series.pixel_spacing == pytest.approx((0.7, 0.7))


def test_one_uid_with_two_orientations_is_split(tmp_path):
    uid = generate_uid()
    axial = ramp_volume((4, 4, 4))
    write_series(tmp_path, axial, series_uid=uid, prefix="ax")
    coronal = rotation("x", 90)  # row = x, col = -z ... a different plane
    write_series(tmp_path, ramp_volume((2, 4, 4)), series_uid=uid, direction=coronal, prefix="co")
    found = scan_dicom(tmp_path)
    assert sorted(s.key for s in found) == [f"{uid}.1", f"{uid}.2"]
    assert all("split into 2 parts" in s.warnings[0] for s in found)
    big = next(s for s in found if s.key == f"{uid}.1")
    assert big.num_slices == 4
    volume = load_dicom(tmp_path, series_key=f"{uid}.1")
    np.testing.assert_array_equal(volume.array, axial)
    assert any("split into 2 parts" in w for w in volume.info.warnings)
    with pytest.raises(SeriesSelectionError, match="split into 2 parts"):
        load_dicom(tmp_path, series_key=uid)


def test_nested_folders_and_junk_files(tmp_path):
    values = ramp_volume((4, 3, 3))
    paths = write_series(tmp_path / "study" / "a", values[:2], shuffle_names=False)
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    write_series(
        tmp_path / "study" / "b" / "deeper",
        values[2:],
        origin=(-100.0, -120.0, 30.0 + 2 * 2.5),
        series_uid=series_uid,
        prefix="late",
    )
    write_junk(tmp_path)
    write_junk(tmp_path / "study" / "b")
    found = scan_dicom(tmp_path)
    assert len(found) == 1 and len(found[0].files) == 4
    np.testing.assert_array_equal(load_dicom(tmp_path).array, values)


def test_only_junk_explains_what_was_skipped(tmp_path):
    write_junk(tmp_path)
    with pytest.raises(NoImageDataError) as info:
        scan_dicom(tmp_path)
    message = str(info.value)
    assert "looked at 4 file(s)" in message
    assert "not DICOM" in message and "DICOMDIR" in message and "empty" in message and "SR" in message


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(NoImageDataError, match="holds no files"):
        scan_dicom(tmp_path)
    with pytest.raises(NoImageDataError):
        load_dicom(tmp_path / "nope")


def test_single_non_dicom_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(MedViewerIOError, match="not a DICOM image"):
        load_dicom(path)


# -- enhanced multi-frame ------------------------------------------------------------------------
def test_enhanced_ct_multiframe_geometry(tmp_path):
    values = ramp_volume((6, 5, 4), offset=-1000)
    spacing, origin = (0.7, 0.6, 1.5), (10.0, -20.0, 5.0)
    path = write_enhanced_ct(tmp_path / "enhanced.dcm", values, spacing, origin, OBLIQUE)
    series = scan_dicom(path)
    assert len(series) == 1 and series[0].is_multiframe and series[0].num_slices == 6
    volume = load_series(series[0])
    np.testing.assert_array_equal(volume.array, values)
    g = volume.geometry
    assert g.spacing == pytest.approx(spacing)
    assert g.origin == pytest.approx(origin)
    np.testing.assert_allclose(g.direction_matrix, OBLIQUE, atol=1e-9)
    assert volume.info.units == "HU" and volume.dtype == np.int16
    assert volume.info.window_presets[0].center == 40
    frames = [item[2] for item in volume.info.extra["source_instances"]]
    assert sorted(frames) == list(range(1, 7)) and frames != list(range(1, 7))


# -- jobs ------------------------------------------------------------------------------------------
def test_progress_and_cancellation(tmp_path):
    write_series(tmp_path, ramp_volume((5, 3, 3)))
    calls = []
    load_dicom(tmp_path, control=JobControl(lambda done, total, msg: calls.append((done, total))))
    assert (5, 5) in calls and len(calls) >= 10

    cancelled = JobControl()
    cancelled.cancel()
    with pytest.raises(JobCancelled):
        scan_dicom(tmp_path, cancelled)

    series = scan_dicom(tmp_path)[0]

    def cancel_midway(done, total, msg):
        if done == 2:
            control.cancel()

    control = JobControl(cancel_midway)
    with pytest.raises(JobCancelled):
        load_series(series, control)


# -- real data from the shared folder, when this checkout has it ----------------------------------
def test_dcmqi_three_slice_ct_matches_simpleitk():
    folder = SHARED_DEV / "dcmqi" / "ct-3slice"
    if not folder.is_dir():
        pytest.skip(f"shared test data not present at {folder}")
    volume = load_dicom(folder)
    assert volume.dtype == np.int16 and volume.info.units == "HU"
    assert_same_as_sitk(volume, sitk_series(folder))


def test_tilted_orientation_with_gantry_tilt_tag_loads_as_oblique(tmp_path):
    # Some scanners tilt ImageOrientationPatient with the gantry: the grid is then regular.
    tilted = rotation("x", 12)
    values = ramp_volume((4, 3, 3))
    write_series(tmp_path, values, direction=tilted, mutate=lambda ds, k: setattr(ds, "GantryDetectorTilt", "12"))
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    np.testing.assert_allclose(volume.geometry.direction_matrix, tilted, atol=1e-9)
    assert any("GantryDetectorTilt is 12 degrees" in w for w in volume.info.warnings)


def test_real_dicomdir_tree_scans_and_loads():
    folder = PYDICOM_FILES / "dicomdirtests"
    if not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests folder is not bundled")
    found = scan_dicom(folder)
    assert len({s.key for s in found}) == len(found) > 5
    for series in found:
        if any(w.startswith("cannot be loaded") for w in series.warnings):
            with pytest.raises(InconsistentSeriesError):
                load_series(series)
        else:
            assert load_series(series).shape[0] == series.num_slices


@pytest.mark.parametrize("seed", range(10))
def test_random_orientations_round_trip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-180, 180, 3)
    direction = rotation("z", angles[0]) @ rotation("y", angles[1]) @ rotation("x", angles[2])
    spacing = tuple(rng.uniform(0.3, 5.0, 3))
    origin = tuple(rng.uniform(-500, 500, 3))
    values = ramp_volume((4, 3, 5))
    write_series(tmp_path, values, spacing, origin, direction, seed=seed)
    volume = load_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    np.testing.assert_allclose(volume.geometry.direction_matrix, direction, atol=1e-9)
    np.testing.assert_allclose(volume.geometry.spacing, spacing, rtol=1e-9)
    np.testing.assert_allclose(volume.geometry.origin, origin, atol=1e-6)


def test_fast_native_path_matches_pydicom_for_12_bit_data(tmp_path):
    """Uncompressed slices skip pydicom's decoder; 12-bit stored data must still be exact."""
    import pydicom

    values = ramp_volume((3, 5, 6), dtype=np.int16, offset=0)
    paths = write_series(tmp_path, values, stored_dtype=np.uint16, mutate=lambda ds, k: setattr(ds, "BitsStored", 12))
    volume = load_dicom(tmp_path)
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(volume.array[k], pydicom.dcmread(path).pixel_array)
