"""The editing core: policy rules, segment operations with undo, provenance, AI acceptance, anatomy names."""

import numpy as np
import pytest

from medviewer.model import (
    Box,
    EditHistory,
    EditMode,
    EditRefused,
    Geometry,
    LabelMap,
    ModelProvenance,
    SegmentEditor,
    SegmentTable,
    SlicePlane,
    Volume,
    prompt_to_physical,
)
from medviewer.model.anatomy import ANATOMY_TABLE, lookup_anatomy, normalize_name, suggest_names


@pytest.fixture
def editor():
    geometry = Geometry((4, 8, 10), (0.5, 0.5, 2.0), (10.0, 20.0, 30.0))
    volume = Volume(np.arange(4 * 8 * 10, dtype=np.int16).reshape(4, 8, 10), geometry)
    ed = SegmentEditor(LabelMap(geometry), SegmentTable(), volume, EditHistory(1 << 24))
    ed.create_segment("liver")  # 1
    ed.create_segment("spleen")  # 2
    ed.create_segment("tumor")  # 3
    return ed


FULL = np.ones((4, 8, 10), bool)


def test_paint_goes_to_active_segment_and_records_provenance(editor):
    editor.policy.active_label = 2
    command = editor.apply(FULL[:1], Box((0, 0, 0), (1, 8, 10)), tool="test", parameters={"k": np.int64(3)})
    assert command.voxels_changed == 80 and editor.labelmap.count(2) == 80
    entry = editor.segments[2].provenance[-1]
    assert entry.kind == "manual" and entry.details["tool"] == "test"
    assert entry.details["voxels_added"] == 80 and entry.details["parameters"] == {"k": 3}
    editor.undo()
    assert editor.labelmap.count(2) == 0 and editor.segments[2].provenance[-1].kind == "create"


def test_locked_segments_are_never_overwritten(editor):
    editor.apply(FULL, label=1)
    editor.set_locked(1, True)
    assert editor.apply(FULL, label=2) is None
    assert editor.labelmap.count(1) == FULL.size
    with pytest.raises(EditRefused, match="locked"):
        editor.apply(FULL, label=1, erase=True)
    with pytest.raises(EditRefused, match="locked"):
        editor.accept_ai_result(FULL, label=1, model=ModelProvenance("m"))
    editor.policy.erase_all_segments = True
    editor.policy.active_label = None
    assert editor.apply(FULL, erase=True) is None  # erasing everything still spares locked voxels


def test_empty_only_and_visible_only_modes(editor):
    editor.apply(FULL[:, :, :5], Box((0, 0, 0), (4, 8, 5)), label=1)
    editor.apply(FULL[:, :4, 5:], Box((0, 0, 5), (4, 4, 10)), label=2)
    editor.policy.mode = EditMode.EMPTY_ONLY
    editor.apply(FULL, label=3)
    assert editor.labelmap.count(3) == 4 * 4 * 5  # only the background quarter
    editor.undo()
    editor.policy.mode = EditMode.VISIBLE_ONLY
    editor.set_visible(2, False)
    assert editor.history.undo_count == 5  # visibility is a view setting, not an undo step
    editor.apply(FULL, label=3)
    assert editor.labelmap.count(2) == 4 * 4 * 5 and editor.labelmap.count(1) == 0


def test_threshold_paint_and_inside_outside_restrictions(editor):
    low, high = 100, 199
    editor.policy.intensity_range = (low, high)
    editor.apply(FULL, label=1)
    values = editor.volume.array
    np.testing.assert_array_equal(editor.labelmap.array == 1, (values >= low) & (values <= high))
    assert editor.segments[1].provenance[-1].details["policy"] == {"intensity_range": [100.0, 199.0]}
    editor.policy.intensity_range = None
    editor.policy.inside_label = 1
    editor.apply(FULL, label=2)
    assert editor.labelmap.count(2) == 100 and editor.labelmap.count(1) == 0
    editor.policy.inside_label = None
    editor.policy.outside_label = 2
    editor.apply(FULL, label=3)
    assert editor.labelmap.count(2) == 100 and editor.labelmap.count(3) == FULL.size - 100


def test_erase_removes_only_active_segment_by_default(editor):
    editor.apply(FULL[:2], Box((0, 0, 0), (2, 8, 10)), label=1)
    editor.apply(FULL[2:], Box((2, 0, 0), (4, 8, 10)), label=2)
    editor.policy.active_label = 1
    editor.apply(FULL, erase=True)
    assert editor.labelmap.count(1) == 0 and editor.labelmap.count(2) == 160


def test_overwritten_segment_gets_its_own_provenance_entry(editor):
    editor.apply(FULL, label=1)
    editor.apply(FULL[:1], Box((0, 0, 0), (1, 8, 10)), label=2, tool="brush")
    lost = editor.segments[1].provenance[-1]
    assert lost.details == {"tool": "brush", "parameters": {}, "voxels_removed": 80, "overwritten_by": 2}
    assert editor.segments[2].provenance[-1].details["overwrote"] == {"1": 80}


def test_create_uses_anatomy_colours_and_terminology(editor):
    segment = editor.create_segment("Left Kidney")
    assert segment.color == (185, 102, 83) and editor.policy.active_label == segment.label
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in segment.tags["TerminologyEntry"]
    editor.undo()
    assert segment.label not in editor.segments and editor.policy.active_label == 3
    editor.redo()
    assert segment.label in editor.segments


def test_rename_updates_automatic_colour_but_keeps_user_colour(editor):
    default = editor.create_segment()
    editor.rename_segment(default.label, "spleen")
    assert default.color == (157, 108, 162)
    editor.recolor_segment(default.label, (1, 2, 3))
    editor.rename_segment(default.label, "liver")
    assert default.color == (1, 2, 3) and default.name == "liver"
    editor.undo()
    editor.undo()
    editor.undo()
    assert default.name == "Segment 4" and default.color != (157, 108, 162)


def test_delete_and_merge_restore_voxels_on_undo(editor):
    editor.apply(FULL[:1], Box((0, 0, 0), (1, 8, 10)), label=1)
    editor.apply(FULL[1:2], Box((1, 0, 0), (2, 8, 10)), label=2)
    editor.apply(FULL[2:3], Box((2, 0, 0), (3, 8, 10)), label=3)
    before = editor.labelmap.array.copy()
    editor.delete_segment(2)
    assert 2 not in editor.segments and editor.labelmap.count(2) == 0
    editor.merge_segments([3], 1)
    assert editor.segments.labels() == [1] and editor.labelmap.count(1) == 160
    merged = editor.segments[1].provenance[-1]
    assert merged.kind == "merge" and merged.details["merged"][0]["name"] == "tumor"
    editor.undo()
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    assert editor.segments.labels() == [1, 2, 3]


def test_reorder_and_lock_are_undoable(editor):
    editor.move_segment(3, 0)
    assert editor.segments.labels() == [3, 1, 2]
    editor.set_locked(1, True)
    editor.undo()
    assert not editor.segments[1].locked
    editor.undo()
    assert editor.segments.labels() == [1, 2, 3]


def test_ai_acceptance_records_model_and_physical_prompts(editor):
    from medviewer.ai.api import Prompt2D

    geometry = editor.geometry
    plane = SlicePlane(0, 2)
    prompt = Prompt2D(box=(1, 2, 6, 5), points=((3, 3),), labels=(1,))
    physical = prompt_to_physical(prompt, geometry, plane)
    np.testing.assert_allclose(physical["box_corners"][0], geometry.index_to_physical([1, 2, 2]))
    np.testing.assert_allclose(physical["points"][0], geometry.index_to_physical([3, 3, 2]))
    model = ModelProvenance("litemedsam", "LiteMedSAM", "1.0", "ab" * 32)
    mask = np.zeros((1, 8, 10), bool)
    mask[0, 2:6, 1:7] = True
    editor.policy.active_label = 3
    command = editor.accept_ai_result(mask, Box((2, 0, 0), (3, 8, 10)), model=model, prompts=[physical])
    assert command.voxels_changed == 24 and editor.history.undo_text == "Accept LiteMedSAM result"
    entry = editor.segments[3].provenance[-1]
    assert entry.kind == "ai"
    assert entry.details["model"]["checkpoint_sha256"] == "ab" * 32
    assert entry.details["prompts"][0]["coordinates"] == "LPS mm"
    # a refined prediction replaces the segment inside the box
    smaller = np.zeros_like(mask)
    smaller[0, 3:5, 2:4] = True
    editor.accept_ai_result(smaller, Box((2, 0, 0), (3, 8, 10)), model=model, replace=True)
    assert editor.labelmap.count(3) == 4


def test_stroke_cancel_restores_voxels(editor):
    editor.apply(FULL[:1], Box((0, 0, 0), (1, 8, 10)), label=2)
    before = editor.labelmap.array.copy()
    count = editor.history.undo_count
    editor.begin_stroke(label=1)
    editor.stroke_apply(FULL[:2], Box((0, 0, 0), (2, 8, 10)))
    editor.stroke_apply(FULL[1:3], Box((1, 0, 0), (3, 8, 10)))
    editor.cancel_stroke()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    assert editor.history.undo_count == count


def test_change_events_carry_boxes(editor):
    boxes = []
    editor.labelmap.changed.connect(boxes.append)
    editor.apply(FULL[:1, :2, :3], Box((1, 2, 3), (2, 4, 6)), label=1)
    editor.undo()
    assert boxes == [Box((1, 2, 3), (2, 4, 6))] * 2


def test_anatomy_lookup_normalises_names():
    assert normalize_name("Kidney_Left") == normalize_name("left kidney") == "left kidney"
    assert lookup_anatomy("LIVER").name == "liver"
    assert lookup_anatomy("Tumour 2").name == "tumor"
    assert lookup_anatomy("R lung").modifier.meaning == "Right"
    assert lookup_anatomy("my custom thing") is None
    assert suggest_names("kid")[0] == "kidney" and "left kidney" in suggest_names("kid")


def test_anatomy_codes_match_pydicom_code_dictionary():
    from pydicom.sr.codedict import codes

    known: dict[str, set[str]] = {}
    for name in dir(codes.SCT):
        code = getattr(codes.SCT, name)
        if hasattr(code, "value"):
            known.setdefault(code.value, set()).add(code.meaning.lower())
    for entry in ANATOMY_TABLE:
        for code in (entry.category, entry.type) + ((entry.modifier,) if entry.modifier else ()):
            assert code.value in known, f"{entry.name}: {code}"
            assert code.meaning.lower() in known[code.value], f"{entry.name}: {code} vs {known[code.value]}"


def test_import_segments_renumbers_respects_locks_and_undoes(editor):
    from medviewer.model import Segment

    editor.apply(FULL[:1], Box((0, 0, 0), (1, 8, 10)), label=1)
    editor.set_locked(1, True)
    incoming = np.zeros(FULL.shape, np.uint8)
    incoming[0:2] = 1  # overlaps the locked liver on slice 0
    incoming[3] = 7
    before = editor.labelmap.array.copy()
    mapping = editor.import_segments(incoming, [Segment(1, "kidney", (1, 2, 3))], "file.seg.nrrd")
    assert mapping == {1: 4, 7: 5}
    assert editor.segments[4].name == "kidney" and editor.segments[5].name == "Segment 7"
    assert editor.labelmap.count(1) == 80 and editor.labelmap.count(4) == 80 and editor.labelmap.count(5) == 80
    assert editor.segments[4].provenance[-1].details == {"source": "file.seg.nrrd", "label_in_file": 1}
    editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, before)
    assert 4 not in editor.segments and 5 not in editor.segments
