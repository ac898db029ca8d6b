"""Document model: geometry maths, label edits with region events, segments, document."""

import numpy as np
import pytest

from medviewer.model import Box, Document, Geometry, GridMismatchError, LabelMap, SegmentTable, Volume


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [i for i in range(3) if i != axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


OBLIQUE = rotation(0, 25) @ rotation(2, -40)


def test_index_physical_round_trip_oblique():
    geometry = Geometry((7, 11, 13), (0.7, 0.9, 2.5), (-12.0, 40.0, 7.5), OBLIQUE.ravel())
    ijk = np.array([[0, 0, 0], [12, 10, 6], [3.5, 2.25, 1.0]])
    points = geometry.index_to_physical(ijk)
    np.testing.assert_allclose(points[0], geometry.origin)
    # moving one voxel along i moves spacing[0] mm along the first direction column
    step = geometry.index_to_physical([1, 0, 0]) - geometry.index_to_physical([0, 0, 0])
    np.testing.assert_allclose(step, 0.7 * OBLIQUE[:, 0], atol=1e-12)
    np.testing.assert_allclose(geometry.physical_to_index(points), ijk, atol=1e-9)
    assert geometry.physical_to_nearest_index(points[1]) == (12, 10, 6)
    assert geometry.physical_to_nearest_index(geometry.index_to_physical([13, 0, 0])) is None
    assert geometry.is_oblique()


def test_geometry_matches_simpleitk_convention():
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.Image(13, 11, 7, sitk.sitkInt16)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((-12.0, 40.0, 7.5))
    image.SetDirection(tuple(OBLIQUE.ravel()))
    geometry = Geometry((7, 11, 13), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    for ijk in [(0, 0, 0), (12, 10, 6), (5, 3, 2)]:
        np.testing.assert_allclose(
            geometry.index_to_physical(ijk), image.TransformIndexToPhysicalPoint(ijk), atol=1e-9
        )


def test_geometry_rejects_bad_input():
    with pytest.raises(ValueError, match="spacing"):
        Geometry((2, 2, 2), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="orthonormal"):
        Geometry((2, 2, 2), direction=(1, 0, 0, 0, 1, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="non-finite"):
        Geometry((2, 2, 2), origin=(0, float("nan"), 0))


def test_axis_codes():
    assert Geometry((2, 2, 2)).axis_codes() == "LPS"
    flipped = Geometry((2, 2, 2), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert flipped.axis_codes() == "RAS"
    coronal = Geometry((2, 2, 2), direction=(1, 0, 0, 0, 0, 1, 0, -1, 0))
    assert coronal.axis_codes() == "LIP"


def test_same_grid_and_difference_message():
    a = Geometry((4, 5, 6), (1, 1, 2))
    assert a.same_grid(Geometry((4, 5, 6), (1, 1, 2 + 1e-7)))
    b = Geometry((4, 5, 6), (1, 1, 2.5), origin=(0, 0, 3))
    message = a.describe_difference(b)
    assert "spacing" in message and "origin" in message and "size" not in message


def test_volume_keeps_dtype_and_validates():
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    volume = Volume(array)
    assert volume.dtype == np.int16 and volume.array is array
    assert volume.value_at((3, 2, 1)) == array[1, 2, 3]
    assert Volume(np.zeros((5, 6), np.uint8)).shape == (1, 5, 6)
    with pytest.raises(ValueError, match="does not match"):
        Volume(array, Geometry((2, 3, 5)))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 2, 2, 2)))


def test_auto_window_prefers_dicom_then_modality_then_percentiles():
    from medviewer.model import VolumeInfo, WindowPreset

    rng = np.random.default_rng(0)
    mr = Volume(rng.integers(0, 1000, (4, 32, 32)).astype(np.uint16), info=VolumeInfo(modality="MR"))
    window = mr.auto_window()
    assert 0 < window.low < 50 and 950 < window.high < 1000
    ct = Volume(np.zeros((1, 4, 4), np.int16), info=VolumeInfo(modality="CT"))
    assert (ct.auto_window().center, ct.auto_window().width) == (40.0, 400.0)
    dicom = WindowPreset("DICOM 1", 300, 1500)
    assert Volume(np.zeros((1, 4, 4), np.int16), info=VolumeInfo(modality="CT", window_presets=[dicom])).auto_window() == dicom


def test_labelmap_paint_emits_changed_box_only():
    labels = LabelMap(Geometry((10, 20, 30)))
    boxes = []
    labels.changed.connect(boxes.append)
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 1:, 2:] = True
    assert labels.paint(mask, 5, offset=(3, 4, 5)) == 4
    assert boxes == [Box((3, 4, 5), (5, 7, 9))]
    assert labels.array[4, 5:7, 7:9].tolist() == [[5, 5], [5, 5]]
    assert labels.count(5) == 4
    # painting the same voxels again changes nothing and emits nothing
    assert labels.paint(mask, 5, offset=(3, 4, 5)) == 0
    assert len(boxes) == 1


def test_labelmap_promotes_to_uint16_and_rejects_wrong_grid():
    labels = LabelMap(Geometry((2, 2, 2)))
    assert labels.array.dtype == np.uint8
    labels.paint(np.ones((1, 1, 1), bool), 300)
    assert labels.array.dtype == np.uint16 and labels.array[0, 0, 0] == 300
    with pytest.raises(GridMismatchError, match="does not match"):
        LabelMap(Geometry((2, 2, 2)), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(GridMismatchError, match="spacing"):
        LabelMap.from_other_grid(Geometry((2, 2, 2)), np.zeros((2, 2, 2)), Geometry((2, 2, 2), (1, 1, 3)))
    with pytest.raises(ValueError, match="whole numbers"):
        LabelMap(Geometry((1, 1, 2)), np.array([[[0.5, 1.0]]]))


def test_box_from_mask_and_union():
    mask = np.zeros((5, 5, 5), bool)
    assert Box.from_mask(mask) is None
    mask[1, 2, 3] = mask[3, 0, 4] = True
    box = Box.from_mask(mask)
    assert box == Box((1, 0, 3), (4, 3, 5))
    assert box.union(Box((0, 0, 0), (1, 1, 1))) == Box((0, 0, 0), (4, 3, 5))


def test_segment_table_events_and_flags():
    table = SegmentTable()
    events = []
    table.changed.connect(events.append)
    liver = table.add("liver")
    spleen = table.add("spleen", (10, 20, 30))
    assert (liver.label, spleen.label) == (1, 2) and spleen.color == (10, 20, 30)
    table.update(1, locked=True, visible=False)
    assert table[1].locked and not table[1].visible
    with pytest.raises(ValueError, match="already used"):
        table.add("again", label=2)
    with pytest.raises(AttributeError):
        table.update(1, provenance=[])
    table.remove(1)
    assert table.next_free_label() == 1
    assert events == [1, 2, 1, 1]


def test_a_failing_subscriber_does_not_stop_others(caplog):
    labels = LabelMap(Geometry((1, 2, 2)))
    seen = []
    labels.changed.connect(lambda box: 1 / 0)
    labels.changed.connect(seen.append)
    labels.paint(np.ones((1, 1, 1), bool), 1)
    assert len(seen) == 1
    assert "failed" in caplog.text


def test_document_segmentation_per_volume():
    document = Document()
    changes = []
    document.active_volume_changed.connect(changes.append)
    first = document.add_volume(Volume(np.zeros((2, 3, 4), np.int16)))
    second = document.add_volume(Volume(np.zeros((5, 3, 4), np.int16)))
    assert document.active_volume is second and changes == [first, second]
    assert document.segmentation(first).labelmap.shape == (2, 3, 4)
    assert document.segmentation().labelmap.shape == (5, 3, 4)
    table = SegmentTable()
    table.add("kidney", label=3)
    loaded = LabelMap(first.geometry, np.full((2, 3, 4), 3, np.uint8))
    seg = document.set_labels(first, loaded, table)
    assert seg.segments[3].name == "kidney" and seg.labelmap.count(3) == 24
    with pytest.raises(GridMismatchError):
        document.set_labels(second, loaded)
    document.remove_volume(second)
    assert document.active_volume is first
