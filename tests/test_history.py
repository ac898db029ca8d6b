"""Undo/redo: voxel deltas, byte budget, command merging, and a property test over random edits."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medviewer.model import Box, EditHistory, EditRefused, Geometry, LabelMap, SegmentEditor, SegmentTable, VoxelDelta
from medviewer.model.history import CallbackCommand, default_budget
from medviewer.model.provenance import SlicePlane


def make_editor(shape=(6, 10, 12), budget=1 << 30):
    geometry = Geometry(shape, (0.8, 0.6, 2.0))
    labelmap = LabelMap(geometry)
    segments = SegmentTable()
    return SegmentEditor(labelmap, segments, history=EditHistory(budget))


# -- VoxelDelta ---------------------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.002, 0.6])
def test_voxel_delta_round_trip_sparse_and_dense(density):
    rng = np.random.default_rng(1)
    geometry = Geometry((20, 30, 40))
    labelmap = LabelMap(geometry, rng.integers(0, 4, geometry.shape))
    before = labelmap.array.copy()
    box = Box((2, 3, 4), (18, 27, 36))
    mask = rng.random(box.shape) < density
    old = labelmap.array[box.slices][mask]
    delta = VoxelDelta.from_mask(box, mask, old, 7)
    assert delta.count == np.count_nonzero(mask)
    assert delta._as_mask == (density > 0.1)  # dense -> bit mask, sparse -> offsets
    delta.restore_new(labelmap)
    expected = before.copy()
    expected[box.slices][mask] = 7
    np.testing.assert_array_equal(labelmap.array, expected)
    delta.restore_old(labelmap)
    np.testing.assert_array_equal(labelmap.array, before)


def test_voxel_delta_shrinks_box_and_compresses_large_changes():
    geometry = Geometry((50, 200, 200))
    labelmap = LabelMap(geometry)
    mask = np.zeros(geometry.shape, bool)
    mask[10:40, 20:180, 30:170] = True  # 672,000 voxels
    delta = VoxelDelta.from_mask(Box.full(geometry.shape), mask, np.zeros(int(mask.sum()), np.uint8), 3)
    assert delta.box == Box((10, 20, 30), (40, 180, 170))
    assert delta.nbytes < 10_000  # a solid block compresses to almost nothing
    delta.restore_new(labelmap)
    assert labelmap.count(3) == mask.sum()


def test_voxel_delta_from_global_matches_values_per_voxel():
    shape = (4, 5, 6)
    flat = np.array([3, 17, 40, 99, 110])
    old = np.array([0, 1, 2, 3, 4], np.uint8)
    new = np.array([9, 8, 7, 6, 5], np.uint8)
    delta = VoxelDelta.from_global(shape, flat, old, new)
    labelmap = LabelMap(Geometry(shape))
    labelmap.array.reshape(-1)[flat] = old
    delta.restore_new(labelmap)
    np.testing.assert_array_equal(labelmap.array.reshape(-1)[flat], new)
    delta.restore_old(labelmap)
    np.testing.assert_array_equal(labelmap.array.reshape(-1)[flat], old)


def test_delta_promotes_labelmap_to_uint16_when_needed():
    labelmap = LabelMap(Geometry((2, 3, 3)))
    mask = np.ones((1, 3, 3), bool)
    delta = VoxelDelta.from_mask(Box((0, 0, 0), (1, 3, 3)), mask, np.zeros(9, np.uint8), 300)
    delta.restore_new(labelmap)
    assert labelmap.array.dtype == np.uint16 and labelmap.count(300) == 9
    delta.restore_old(labelmap)
    assert labelmap.count(300) == 0


# -- history ------------------------------------------------------------------------------------
def test_history_events_texts_and_budget_eviction():
    history = EditHistory(budget_bytes=1000)
    events = []
    history.changed.connect(lambda: events.append((history.can_undo, history.can_redo)))
    state = []
    for n in range(10):
        state.append(n)
        history.push(CallbackCommand(f"step {n}", lambda n=n: state.append(n), lambda: state.pop(), nbytes=150))
    assert history.nbytes <= 1000 and history.undo_count == 2 and history.dropped == 8
    assert history.undo_text == "step 9"
    history.undo()
    assert state[-1] == 8 and history.redo_text == "step 9" and events[-1] == (True, True)
    history.redo()
    assert state[-1] == 9
    history.undo()
    history.push(CallbackCommand("new", lambda: None, lambda: None))  # a new edit drops the redo branch
    assert not history.can_redo


def test_newest_command_is_kept_even_over_budget():
    history = EditHistory(budget_bytes=10)
    history.push(CallbackCommand("big", lambda: None, lambda: None, nbytes=10_000))
    assert history.can_undo


def test_default_budget_is_ten_percent_with_floor():
    assert default_budget(512 * 512 * 300 * 2) == int(512 * 512 * 300 * 2 * 0.1)
    assert default_budget(1000) == 1 << 20


def test_recolour_drags_merge_into_one_step():
    editor = make_editor()
    segment = editor.create_segment("x")
    before = segment.color
    for value in range(10, 60, 10):
        editor.recolor_segment(segment.label, (value, 0, 0))
    assert editor.history.undo_count == 2  # create + one merged recolour
    editor.undo()
    assert editor.segments[segment.label].color == before


def test_noop_edits_are_not_recorded():
    editor = make_editor()
    editor.create_segment("a")
    count = editor.history.undo_count
    box = Box((0, 0, 0), (2, 2, 2))
    assert editor.apply(np.ones(box.shape, bool), box) is not None
    assert editor.apply(np.ones(box.shape, bool), box) is None  # already painted
    assert editor.apply(np.zeros(box.shape, bool), box) is None
    editor.begin_stroke()
    editor.stroke_apply(np.ones(box.shape, bool), box)
    assert editor.end_stroke() is None
    editor.rename_segment(1, "a")
    assert editor.history.undo_count == count + 1


def test_stroke_that_paints_and_erases_back_records_only_net_change():
    editor = make_editor()
    editor.create_segment("a")
    box = Box((1, 1, 1), (3, 4, 5))
    editor.begin_stroke()
    editor.stroke_apply(np.ones(box.shape, bool), box)
    assert editor.end_stroke().voxels_changed == 24
    editor.undo()
    assert editor.labelmap.count(1) == 0


# -- property test ------------------------------------------------------------------------------
SHAPE = (4, 6, 7)

box_strategy = st.tuples(
    *[st.integers(0, n - 1) for n in SHAPE], *[st.integers(1, n) for n in SHAPE]
).map(lambda t: Box(tuple(t[:3]), tuple(min(n, a + s) for a, s, n in zip(t[:3], t[3:], SHAPE))))

operation = st.one_of(
    st.tuples(st.just("paint"), st.integers(1, 3), box_strategy, st.integers(0, 2**16)),
    st.tuples(st.just("erase"), st.integers(1, 3), box_strategy, st.integers(0, 2**16)),
    st.tuples(st.just("replace"), st.integers(1, 3), box_strategy, st.integers(0, 2**16)),
    st.tuples(st.just("stroke"), st.integers(1, 3), st.lists(box_strategy, min_size=1, max_size=4), st.integers(0, 2**16)),
    st.tuples(st.just("create"), st.sampled_from(["liver", "tumor", None])),
    st.tuples(st.just("delete"), st.integers(1, 3)),
    st.tuples(st.just("merge"), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just("rename"), st.integers(1, 3), st.sampled_from(["spleen", "b", "kidney left"])),
    st.tuples(st.just("recolor"), st.integers(1, 3), st.integers(0, 255)),
    st.tuples(st.just("lock"), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("move"), st.integers(1, 3), st.integers(0, 3)),
    st.tuples(st.just("mode"), st.sampled_from(["everywhere", "empty", "visible"])),
)


def _table_state(segments):
    return [(s.label, s.name, tuple(s.color), s.locked, len(s.provenance)) for s in segments]


def _run(editor, op):
    kind = op[0]
    rng_mask = lambda seed, shape: np.random.default_rng(seed).random(shape) < 0.5  # noqa: E731
    segments = editor.segments
    if kind in ("paint", "erase", "replace", "stroke") and op[1] not in segments:
        return
    if kind == "paint":
        editor.apply(rng_mask(op[3], op[2].shape), op[2], op[1])
    elif kind == "erase":
        editor.apply(rng_mask(op[3], op[2].shape), op[2], op[1], erase=True)
    elif kind == "replace":
        editor.replace_segment(rng_mask(op[3], op[2].shape), op[2], op[1])
    elif kind == "stroke":
        editor.begin_stroke(label=op[1])
        for n, box in enumerate(op[2]):
            editor.stroke_apply(rng_mask(op[3] + n, box.shape), box)
        editor.end_stroke()
    elif kind == "create":
        if len(segments) < 3:
            editor.create_segment(op[1])
    elif kind == "delete" and op[1] in segments:
        editor.delete_segment(op[1])
    elif kind == "merge" and op[1] in segments and op[2] in segments:
        editor.merge_segments([op[1]], op[2])
    elif kind == "rename" and op[1] in segments:
        editor.rename_segment(op[1], op[2])
    elif kind == "recolor" and op[1] in segments:
        editor.recolor_segment(op[1], (op[2], 10, 20))
    elif kind == "lock" and op[1] in segments:
        editor.set_locked(op[1], op[2])
    elif kind == "move" and op[1] in segments:
        editor.move_segment(op[1], op[2])
    elif kind == "mode":
        editor.policy.mode = op[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=8, max_size=30), st.integers(0, 2**16))
def test_random_edits_undo_to_original_and_redo_to_final(operations, seed):
    editor = make_editor(SHAPE)
    rng = np.random.default_rng(seed)
    editor.create_segment("liver")
    editor.create_segment("spleen")
    editor.labelmap.array[...] = rng.integers(0, 3, SHAPE)
    editor.history.clear()
    original = editor.labelmap.array.copy()
    original_table = _table_state(editor.segments)
    for op in operations:
        try:
            _run(editor, op)
        except EditRefused:
            pass  # locked segments refuse edits; nothing is recorded
    final = editor.labelmap.array.copy()
    final_table = _table_state(editor.segments)
    steps = editor.history.undo_count
    while editor.history.can_undo:
        editor.undo()
    np.testing.assert_array_equal(editor.labelmap.array, original)
    assert _table_state(editor.segments) == original_table
    for _ in range(steps):
        editor.redo()
    np.testing.assert_array_equal(editor.labelmap.array, final)
    assert _table_state(editor.segments) == final_table


def test_document_segmentation_has_budgeted_history():
    from medviewer.model import Document, Volume

    document = Document()
    volume = document.add_volume(Volume(np.zeros((4, 64, 64), np.int16)))
    segmentation = document.segmentation(volume)
    assert segmentation.history.budget_bytes == default_budget(volume.nbytes)
    editor = SegmentEditor.for_document(document)
    assert editor.history is segmentation.history
    editor.create_segment("a")
    brush_plane = SlicePlane(0, 1)
    assert brush_plane.to_ijk(3, 4) == (3, 4, 1.0)
