"""Every entry of the generated bad-input corpus through the loader, the CLI and the window.

A bad file must give a typed error whose message names the file and says what is wrong;
borderline files (colour images, a folder of junk around one series) must load and say
what was done with them. Nothing here may raise a foreign exception or allocate what a
lying header claims.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from bad_input_corpus import CORPUS, reference_volume
from medviewer.cli import main
from medviewer.io.errors import MedViewerIOError
from medviewer.io.loader import load_labels, load_volume

ENTRIES = {entry.name: entry for entry in CORPUS}


def _open(entry, path):
    if entry.role == "labels":
        return load_labels(path, reference_volume())
    return load_volume(path)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_loader_refuses_clearly_or_loads_with_a_warning(tmp_path, name):
    entry = ENTRIES[name]
    path = entry.build(tmp_path)
    tracemalloc.start()
    try:
        if entry.error is None:
            result = _open(entry, path)
            if entry.problem:
                assert any(re.search(entry.problem, w) for w in result.info.warnings), result.info.warnings
            return
        with pytest.raises(entry.error) as caught:
            _open(entry, path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{name}: {peak / 2**20:.0f} MiB allocated"
    message = str(caught.value)
    assert path.name in message, message
    assert re.search(entry.problem, message, re.IGNORECASE | re.DOTALL), message
    assert "\n" not in message and "Traceback" not in message


def test_junk_around_one_series_loads_that_series(tmp_path):
    volume = load_volume(ENTRIES["junk_folder_with_one_series"].build(tmp_path))
    assert volume.shape == (3, 6, 5)
    assert volume.array.std() > 0


@pytest.mark.parametrize("name", sorted(n for n, e in ENTRIES.items() if e.role == "volume"))
def test_cli_info_never_crashes_and_errors_are_one_line(tmp_path, capsys, name):
    entry = ENTRIES[name]
    path = entry.build(tmp_path)
    code = main(["info", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        # info reads headers only: pixel-level damage shows up when the pixels are loaded
        assert entry.error is None or name in ("truncated_dicom", "lossy_jpeg_12bit", "dicom_without_pixels")
        return
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and path.name in lines[0], captured.err


def test_colour_image_warning_and_luminance_values(tmp_path):
    volume = load_volume(ENTRIES["rgb_png"].build(tmp_path))
    assert volume.color is not None
    np.testing.assert_array_equal(volume.array[0], np.full((6, 7), round(0.587 * 120), np.uint8))


def test_truncated_compressed_nifti_is_refused(tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "short.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(4 * 32 * 32, dtype=np.int16).reshape(4, 32, 32)), str(path), True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MedViewerIOError, match=r"short\.nii\.gz.*truncated"):
        load_volume(path)


def test_plain_nifti_named_nii_gz_still_loads(tmp_path):
    import SimpleITK as sitk

    values = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "plain.nii"))
    (tmp_path / "plain.nii").rename(tmp_path / "named.nii.gz")
    np.testing.assert_array_equal(load_volume(tmp_path / "named.nii.gz").array, values)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_raw_header_promising_more_data_than_the_file_holds_is_refused_before_reading(tmp_path, suffix):
    import SimpleITK as sitk

    path = tmp_path / f"short{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 16, 16), np.int16)), str(path), False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MedViewerIOError, match=rf"short\{suffix}: the file is truncated: .* 2,048 bytes"):
        load_volume(path)


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("garbage.pth", lambda good: b"these are not weights\n" * 20,
         r"not a PyTorch checkpoint \(\d+ bytes; it is neither a zip archive"),
        ("truncated.pth", lambda good: good[: len(good) // 2], r"zip archive is truncated or corrupted"),
        ("plain_pickle.pth", lambda good: __import__("pickle").dumps({"weights": [1, 2]}, protocol=2),
         r"a Python pickle that torch.save did not write"),
        ("damaged_pickle.pth", lambda good: b"\x80\x02garbage", r"pickle data is damaged .*Unsupported operand"),
    ],
)
def test_checkpoint_refusals_say_what_is_actually_wrong(tmp_path, name, make, expected):
    torch = pytest.importorskip("torch")
    from medviewer.ai.checkpoints import load_state_dict
    from medviewer.ai.errors import CheckpointError

    good = tmp_path / "good.pth"
    torch.save({"layer.weight": torch.zeros(4, 4)}, good)
    path = tmp_path / name
    path.write_bytes(make(good.read_bytes()))
    with pytest.raises(CheckpointError, match=expected) as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value) and "run code" not in str(caught.value)
