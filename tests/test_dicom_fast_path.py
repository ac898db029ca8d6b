"""The fast DICOM road (quick header walk, direct pixel reads, integer rescale) gives exactly
what the pydicom road gives, and hands every unusual file to pydicom."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from dicom_fixtures import (
    CT_IMAGE_STORAGE,
    _base_dataset,
    _set_pixel_module,
    ramp_volume,
    write_enhanced_ct,
    write_series,
)
from medviewer.io.dicom import build, load_dicom, scan, scan_dicom
from medviewer.io.dicom.quick_header import read_quick_header
from medviewer.io.errors import MedViewerIOError

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def bundled_files() -> list[Path]:
    files = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file() and p.suffix not in (".txt", ".dump", ".icc"))
    if len(files) < 20:
        pytest.skip("this pydicom wheel ships no test files")
    return files


@pytest.fixture
def pydicom_only(monkeypatch):
    """Switch both fast roads off, so a test can compute the reference result."""

    def switch_off():
        monkeypatch.setattr(scan, "read_quick_header", lambda *args: None)
        monkeypatch.setattr(build, "_direct_dtype", lambda items: None)

    return switch_off


@pytest.fixture
def direct_reads(monkeypatch):
    """Record the outcome of every direct pixel read (True: read, False: handed to pydicom)."""
    outcomes: list[bool] = []
    original = build._read_direct

    def spy(*args):
        extremes = original(*args)
        outcomes.append(extremes is not None)
        return extremes

    monkeypatch.setattr(build, "_read_direct", spy)
    return outcomes


def header_or_skip(path: Path):
    try:
        header = scan._read_header(str(path))
    except scan._Skip as skip:
        return ("skipped", skip.reason)
    header.frames = [dataclasses.replace(frame, pixel_location=None) for frame in header.frames]
    return header


def pydicom_pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


# -- headers --------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on deliberately broken files
def test_quick_headers_equal_pydicom_headers_on_every_bundled_file(monkeypatch):
    """The files shipped with pydicom: implicit/explicit VR, big endian, private sequences, damage."""
    files = bundled_files()
    quick = {path: header_or_skip(path) for path in files}
    taken = [path for path in files if read_quick_header(str(path), scan.HEADER_TAG_NUMBERS) is not None]
    monkeypatch.setattr(scan, "read_quick_header", lambda *args: None)
    different = [path.name for path in files if header_or_skip(path) != quick[path]]
    assert different == []
    assert len(taken) > len(files) // 2  # the fast road is the common one, not a rare one
    names = {path.name for path in taken}
    assert "MR_small_implicit.dcm" in names and "priv_SQ.dcm" in names
    assert "MR_small_bigendian.dcm" not in names  # big endian goes to pydicom


def test_files_needing_pydicom_are_handed_over(tmp_path):
    array = ramp_volume((2, 4, 5))
    enhanced = tmp_path / "enhanced"
    enhanced.mkdir()
    write_enhanced_ct(enhanced / "e.dcm", array)

    def latin1(ds, k):
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SeriesDescription = "Kopf Müller"

    latin = write_series(tmp_path / "latin", array, mutate=latin1)
    bad_number = write_series(tmp_path / "bad", array, mutate=lambda ds, k: setattr(ds, "SpacingBetweenSlices", "9.75"))
    bad_number[0].write_bytes(bad_number[0].read_bytes().replace(b"9.75", b"9,75"))  # a decimal comma
    for path in [enhanced / "e.dcm", latin[0], bad_number[0]]:
        assert read_quick_header(str(path), scan.HEADER_TAG_NUMBERS) is None, path.name
    assert scan_dicom(tmp_path / "latin")[0].description == "Kopf Müller"


# -- pixels ---------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on deliberately broken files
def test_direct_pixels_equal_pydicom_on_every_bundled_image(pydicom_only, direct_reads):
    fast: dict[Path, object] = {}
    files = bundled_files()
    for path in files:
        try:
            fast[path] = load_dicom(path)
        except MedViewerIOError as exc:
            fast[path] = str(exc)
    assert sum(direct_reads) >= 5
    pydicom_only()
    for path in files:
        try:
            reference = load_dicom(path)
        except MedViewerIOError as exc:
            assert fast[path] == str(exc)
            continue
        volume = fast[path]
        assert not isinstance(volume, str), f"{path.name}: {volume}"
        assert volume.array.dtype == reference.array.dtype, path.name
        np.testing.assert_array_equal(volume.array, reference.array, err_msg=path.name)
        assert volume.info.warnings == reference.info.warnings


def _with_sequences(ds: Dataset, k: int) -> None:
    """Undefined-length sequences (nested), a private block and an odd value before the pixels."""
    reference = Dataset()
    reference.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    reference.ReferencedSOPInstanceUID = generate_uid()
    inner = Dataset()
    inner.CodeValue = "T-D1100"
    reference.PurposeOfReferenceCodeSequence = DicomSequence([inner])
    ds.ReferencedImageSequence = DicomSequence([reference, reference])
    block = ds.private_block(0x0029, "MEDVIEWER TEST", create=True)
    block.add_new(0x10, "OB", b"\x01\x02\x03")
    block.add_new(0x11, "SQ", DicomSequence([Dataset()]))


def _twelve_bits(ds: Dataset, k: int) -> None:
    ds.BitsStored, ds.HighBit = 12, 11


def _implicit_vr(ds: Dataset, k: int) -> None:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian


def _zero_unused_bits(ds: Dataset, k: int) -> None:
    """Negative 12-bit values written without sign extension (bits 12-15 left at zero)."""
    _twelve_bits(ds, k)
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") & 0x0FFF).astype("<u2").tobytes()


CASES = {  # stored type, shape, smallest and largest value, mutate
    "int16": (np.int16, (3, 6, 7), None, None),
    "int16 12-bit": (np.int16, (3, 6, 7), (-2048, 2047), _twelve_bits),
    "uint16 12-bit": (np.uint16, (3, 6, 7), (0, 4095), _twelve_bits),
    "uint8 odd size": (np.uint8, (3, 5, 7), None, None),
    "int32": (np.int32, (2, 4, 3), None, None),
    "uint32": (np.uint32, (2, 4, 3), (0, 2**31 - 1), None),  # larger ones become float32
    "implicit VR": (np.int16, (3, 6, 7), None, _implicit_vr),
    "nested sequences": (np.int16, (3, 6, 7), None, _with_sequences),
}


@pytest.mark.parametrize("case", list(CASES))
def test_direct_read_equals_pydicom_pixel_array(tmp_path, case, direct_reads):
    dtype, shape, extremes, mutate = CASES[case]
    low, high = extremes or (np.iinfo(dtype).min, np.iinfo(dtype).max)
    values = np.random.default_rng(2).integers(low, high, shape, endpoint=True).astype(dtype)
    values.flat[:2] = low, high  # both extremes, the sign bit included
    paths = write_series(tmp_path, values, modality="MR", mutate=mutate)
    assert all(read_quick_header(str(p), scan.HEADER_TAG_NUMBERS) is not None for p in paths)
    volume = load_dicom(tmp_path)
    assert direct_reads and all(direct_reads)
    expected = np.stack([pydicom_pixels(p) for p in paths])
    np.testing.assert_array_equal(volume.array, expected)
    assert volume.info.extra["stored_dtype"] == str(expected.dtype)


def test_classic_multiframe_frames_are_read_at_their_offsets(tmp_path, direct_reads):
    stored = ramp_volume((4, 5, 6), dtype=np.uint16, offset=7)
    ds = _base_dataset(CT_IMAGE_STORAGE, generate_uid())
    ds.Modality = "OT"
    ds.SeriesInstanceUID = generate_uid()
    _set_pixel_module(ds, stored, frames=4)
    path = tmp_path / "multi.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    volume = load_dicom(path)
    assert direct_reads == [True]
    np.testing.assert_array_equal(volume.array, pydicom_pixels(path))


@pytest.mark.parametrize("dtype, mutate", [(np.uint16, _twelve_bits), (np.int16, _zero_unused_bits)])
def test_values_outside_bits_stored_are_left_to_pydicom(tmp_path, direct_reads, dtype, mutate):
    values = ramp_volume((2, 4, 5), dtype=dtype, offset=0 if dtype == np.uint16 else -30)
    if dtype == np.uint16:
        values[1, 2, 3] = 0xF123  # stray bits above BitsStored=12
    paths = write_series(tmp_path, values, modality="MR", mutate=mutate)
    volume = load_dicom(tmp_path)
    assert False in direct_reads
    expected = np.stack([pydicom_pixels(p) for p in paths])
    np.testing.assert_array_equal(volume.array, expected)
    if dtype == np.int16:
        assert expected.min() < 0  # pydicom extended the sign; so did the load


def test_file_rewritten_after_the_scan_is_read_again_properly(tmp_path, direct_reads):
    values = ramp_volume((3, 4, 5))
    paths = write_series(tmp_path, values, modality="MR", shuffle_names=False)
    series = scan_dicom(tmp_path)[0]
    replacement = values.copy()
    replacement[1] += 7
    # A longer description moves the pixel data: the scanned offset is stale now.
    write_series(tmp_path, replacement, modality="MR", shuffle_names=False, description="Rewritten, longer text",
                 series_uid=series.series_instance_uid)
    volume = build.load_series(series)
    assert False in direct_reads
    np.testing.assert_array_equal(volume.array, replacement)
    assert len(paths) == 3


def test_file_truncated_after_the_scan_names_the_file(tmp_path):
    paths = write_series(tmp_path, ramp_volume((3, 4, 5)), modality="MR", shuffle_names=False)
    series = scan_dicom(tmp_path)[0]
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-10])
    with pytest.raises(MedViewerIOError) as info:
        build.load_series(series)
    assert paths[2].name in str(info.value)


# -- integer rescale ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stored_dtype, rescale, stored_range, out_dtype",
    [
        (np.uint16, (1.0, -30000.0), (0, 62767), np.int16),  # same width: wraps on the way, exact at the end
        (np.uint16, (2.0, -1000.0), (0, 16000), np.int16),  # same width, multiplied
        (np.int16, (3.0, 0.0), (-32768, 32767), np.int32),  # widened
        (np.int16, (-2.0, 5.0), (-32768, 32767), np.int32),  # negative slope
        (np.uint8, (1.0, -100.0), (0, 255), np.int16),
    ],
)
def test_whole_number_rescale_is_exact(tmp_path, stored_dtype, rescale, stored_range, out_dtype):
    slope, intercept = rescale
    low, high = stored_range
    stored = np.random.default_rng(1).integers(low, high, (3, 6, 7), endpoint=True)
    stored.flat[:2] = low, high
    expected = stored * int(slope) + int(intercept)
    write_series(tmp_path, expected, rescale=rescale, stored_dtype=stored_dtype, modality="MR")
    volume = load_dicom(tmp_path)
    assert volume.array.dtype == out_dtype
    np.testing.assert_array_equal(volume.array, expected)


def test_per_slice_whole_number_rescales_are_exact(tmp_path):
    rescales = [(1.0, -1024.0), (2.0, 10.0), (1.0, 0.0), (-1.0, 3.0)]
    stored = ramp_volume((4, 5, 6), dtype=np.int64, offset=-500)
    expected = np.stack([stored[k] * int(a) + int(b) for k, (a, b) in enumerate(rescales)])
    write_series(tmp_path, expected, rescale=rescales, stored_dtype=np.int16, modality="MR")
    volume = load_dicom(tmp_path)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, expected)


# -- damaged files --------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mutated_files_read_as_pydicom_reads_them_or_go_to_pydicom(tmp_path, monkeypatch):
    """Random byte damage (lengths, delimiters, tags, truncation): the quick reader never
    raises or stalls, and whenever it answers, the scan sees what pydicom would have seen."""
    def fixed_content(ds: Dataset, k: int) -> None:  # the same bytes every run: damage is reproducible
        _with_sequences(ds, k)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"

    seed = write_series(tmp_path / "seed", ramp_volume((1, 8, 9)), mutate=fixed_content,
                        series_uid="1.2.826.0.1.3680043.8.498.3", study_uid="1.2.826.0.1.3680043.8.498.4",
                        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.5")[0].read_bytes()
    target = tmp_path / "damaged.dcm"
    rng = np.random.default_rng(7)
    markers = [b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\x00\x00\x00\x00"]
    answered = 0
    for _ in range(300):
        data = bytearray(seed)
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(128, len(data) - 4))
            if rng.random() < 0.3:
                data[at:at + 4] = markers[int(rng.integers(len(markers)))]
            else:
                data[at] = int(rng.integers(256))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(100, len(data)))]
        target.write_bytes(bytes(data))
        if read_quick_header(str(target), scan.HEADER_TAG_NUMBERS) is None:
            continue
        answered += 1
        fast = header_or_skip(target)
        with monkeypatch.context() as patch:
            patch.setattr(scan, "read_quick_header", lambda *args: None)
            assert header_or_skip(target) == fast
    assert answered > 20
