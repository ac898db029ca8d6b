"""Headless tests of the viewer logic: reslice geometry, cursor, presets, layouts, stats."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.model import Box, Geometry, Volume, VolumeInfo, WindowPreset
from medviewer.render.label_outline import label_outline
from medviewer.render.layout import DEFAULT_LAYOUT, LAYOUT_NAMES, LAYOUTS, PANES, LayoutState
from medviewer.render.mpr import (
    SliceGeometry,
    ViewOrientation,
    aligned_direction,
    contains_point,
    snap_cursor,
    volume_centre,
)
from medviewer.render.segment_stats import LabelCounter, format_volume_ml, volume_ml
from medviewer.render.thumbnails import to_thumbnail
from medviewer.render.window_presets import (
    CT_WINDOW_PRESETS,
    find_window_preset,
    initial_window,
    looks_like_ct,
    window_presets,
)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


OBLIQUE = Geometry((30, 40, 50), (0.8, 1.1, 2.5), (-12.0, 30.0, 7.5), (rotation("x", 25) @ rotation("z", -15)).ravel())
STANDARD = Geometry((30, 40, 50), (0.8, 1.1, 2.5), (-12.0, 30.0, 7.5))
RAS_STORED = Geometry((30, 40, 50), (0.8, 1.1, 2.5), (20.0, 25.0, -5.0), np.diag([-1.0, -1.0, 1.0]).ravel())


# -- screen axes and letters --------------------------------------------------------------
@pytest.mark.parametrize(
    "orientation, letters",
    [("axial", ("R", "L", "A", "P")), ("coronal", ("R", "L", "S", "I")), ("sagittal", ("A", "P", "S", "I"))],
)
@pytest.mark.parametrize("geometry", [STANDARD, OBLIQUE, RAS_STORED], ids=["lps", "oblique", "ras"])
def test_views_show_radiological_patient_axes_whatever_the_storage(orientation, letters, geometry):
    plan = SliceGeometry.for_volume(geometry, orientation)
    got = plan.letters()
    assert (got.left, got.right, got.top, got.bottom) == letters
    # screen axes and the normal form an orthonormal frame
    frame = np.stack([plan.right, plan.down, plan.normal])
    np.testing.assert_allclose(np.abs(frame @ frame.T), np.eye(3), atol=1e-12)


def test_aligned_volume_samples_exactly_on_voxel_centres():
    plan = SliceGeometry.for_volume(STANDARD, "axial")
    assert plan.axis_aligned and plan.pixel_spacing == (0.8, 1.1) and plan.size == (50, 40)
    assert plan.slice_step == pytest.approx(2.5) and plan.slice_count == 30
    k = 7
    position = plan.position_of_index(k)
    # every output pixel (a, b) samples voxel (a, b, k) exactly
    for a, b in ((0, 0), (49, 39), (13, 27)):
        x = plan.origin_2d[0] + a * plan.pixel_spacing[0]
        y = plan.origin_2d[1] + b * plan.pixel_spacing[1]
        np.testing.assert_allclose(plan.sample_index(x, y, position), (a, b, k), atol=1e-9)


def test_coronal_and_sagittal_of_a_standard_volume_flip_only_the_vertical():
    coronal = SliceGeometry.for_volume(STANDARD, "coronal")
    assert coronal.size == (50, 30) and coronal.pixel_spacing == (0.8, 2.5) and coronal.slice_count == 40
    top_left = coronal.sample_index(coronal.origin_2d[0], coronal.origin_2d[1], coronal.position_of_index(5))
    np.testing.assert_allclose(top_left, (0, 5, 29), atol=1e-9)  # top row = most superior slice
    sagittal = SliceGeometry.for_volume(STANDARD, "sagittal")
    assert sagittal.size == (40, 30) and sagittal.pixel_spacing == (1.1, 2.5) and sagittal.slice_count == 50
    top_left = sagittal.sample_index(sagittal.origin_2d[0], sagittal.origin_2d[1], sagittal.position_of_index(3))
    np.testing.assert_allclose(top_left, (3, 0, 29), atol=1e-9)  # left = anterior (j = 0)


def test_ras_stored_volume_is_mirrored_into_radiological_view():
    plan = SliceGeometry.for_volume(RAS_STORED, "axial")
    assert plan.axis_aligned
    # i grows to the patient's right, so the screen's left (R) is the last column i = 49
    left = plan.sample_index(plan.origin_2d[0], plan.origin_2d[1], plan.position_of_index(0))
    np.testing.assert_allclose(left[:2], (49, 39), atol=1e-9)


def test_reslice_matrix_maps_output_pixels_to_the_scaled_input_index():
    for geometry in (STANDARD, OBLIQUE, RAS_STORED):
        for orientation in ViewOrientation:
            plan = SliceGeometry.for_volume(geometry, orientation)
            s = plan.position_of_index(plan.slice_count // 3)
            matrix = plan.reslice_matrix(s)
            for x, y in ((plan.origin_2d[0], plan.origin_2d[1]), (3.3, -7.1)):
                scaled = (matrix @ np.array([x, y, 0.0, 1.0]))[:3]
                expected = plan.sample_index(x, y, s) * np.asarray(geometry.spacing)
                np.testing.assert_allclose(scaled, expected, atol=1e-9)
                np.testing.assert_allclose(
                    geometry.index_to_physical(plan.sample_index(x, y, s)), plan.point_on_plane(x, y, s), atol=1e-9
                )


def test_oblique_volume_uses_the_smallest_spacing_and_covers_the_volume():
    plan = SliceGeometry.for_volume(OBLIQUE, "coronal")
    assert not plan.axis_aligned and plan.pixel_spacing == (0.8, 0.8)
    corners = np.array([(i, j, k) for i in (0, 49) for j in (0, 39) for k in (0, 29)], dtype=float)
    points = OBLIQUE.index_to_physical(corners)
    x0, x1, y0, y1 = plan.image_bounds()
    assert np.all(points @ plan.right >= x0) and np.all(points @ plan.right <= x1)
    assert np.all(points @ plan.down >= y0) and np.all(points @ plan.down <= y1)
    along = points @ plan.normal
    assert plan.slice_first == pytest.approx(along.min()) and plan.slice_last <= along.max() + 1e-9
    # the step is the voxel spacing projected on the normal
    expected = float(np.sum(np.abs(OBLIQUE.direction_matrix.T @ plan.normal) * np.asarray(OBLIQUE.spacing)))
    assert plan.slice_step == pytest.approx(expected)


def test_scrolling_moves_one_slice_along_the_index_axis_and_clamps():
    plan = SliceGeometry.for_volume(STANDARD, "axial")
    start = STANDARD.index_to_physical((10, 20, 12))
    moved = plan.step_point(start, 1)
    np.testing.assert_allclose(STANDARD.physical_to_index(moved), (10, 20, 13), atol=1e-9)
    np.testing.assert_allclose(STANDARD.physical_to_index(plan.step_point(start, -100)), (10, 20, 0), atol=1e-9)
    np.testing.assert_allclose(STANDARD.physical_to_index(plan.step_point(start, 100)), (10, 20, 29), atol=1e-9)
    assert plan.slice_index(plan.slice_position(moved)) == 13
    ras = SliceGeometry.for_volume(RAS_STORED, "coronal")  # j grows anterior here
    point = RAS_STORED.index_to_physical((5, 5, 5))
    np.testing.assert_allclose(RAS_STORED.physical_to_index(ras.step_point(point, 1)), (5, 6, 5), atol=1e-9)


def test_position_text_reads_the_patient_coordinate():
    plan = SliceGeometry.for_volume(STANDARD, "axial")
    assert plan.position_text((1.0, 2.0, -10.0)) == "S -10.00 mm"
    assert SliceGeometry.for_volume(STANDARD, "coronal").position_text((1.0, 2.004, 3.0)) == "P 2.00 mm"
    assert SliceGeometry.for_volume(STANDARD, "sagittal").position_text((0.001, 2.0, 3.0)) == "L 0.00 mm"


def test_changed_box_only_touches_the_slices_it_spans():
    plan = SliceGeometry.for_volume(STANDARD, "axial")
    box = Box((5, 0, 0), (8, 4, 4))
    touched = [k for k in range(30) if plan.box_touches_slice(box, plan.position_of_index(k))]
    assert touched == [5, 6, 7]
    coronal = SliceGeometry.for_volume(STANDARD, "coronal")
    assert [j for j in range(40) if coronal.box_touches_slice(box, coronal.position_of_index(j))] == [0, 1, 2, 3]
    assert not plan.box_touches_slice(Box((5, 0, 0), (5, 4, 4)), plan.position_of_index(5))  # empty box
    oblique = SliceGeometry.for_volume(OBLIQUE, "axial")
    centre = OBLIQUE.index_to_physical((25, 20, 15))
    assert oblique.box_touches_slice(Box((15, 20, 25), (16, 21, 26)), oblique.slice_position(centre))
    far = OBLIQUE.index_to_physical((25, 20, 0))
    assert not oblique.box_touches_slice(Box((28, 20, 25), (30, 21, 26)), oblique.slice_position(far))


def test_cursor_snapping_and_containment():
    point = STANDARD.index_to_physical((3.4, 7.6, 29.9)) + 0.0
    snapped = snap_cursor(STANDARD, point)
    np.testing.assert_allclose(STANDARD.physical_to_index(snapped), (3, 8, 29), atol=1e-9)
    outside = STANDARD.index_to_physical((-10, 5, 40))
    np.testing.assert_allclose(STANDARD.physical_to_index(snap_cursor(STANDARD, outside)), (0, 5, 29), atol=1e-9)
    exact = OBLIQUE.index_to_physical((3.4, 7.6, 12.2))
    np.testing.assert_allclose(snap_cursor(OBLIQUE, exact), exact, atol=1e-9)  # oblique: no rounding
    assert contains_point(STANDARD, volume_centre(STANDARD)) and not contains_point(STANDARD, outside)
    np.testing.assert_allclose(STANDARD.physical_to_index(volume_centre(STANDARD)), (25, 20, 15))
    assert aligned_direction(OBLIQUE) is None
    nearly = Geometry((2, 2, 2), direction=(1, 1e-5, 0, -1e-5, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(aligned_direction(nearly), np.eye(3))


# -- window presets -------------------------------------------------------------------------
def _volume(values, modality="", presets=()):
    info = VolumeInfo(modality=modality, window_presets=list(presets))
    return Volume(np.asarray(values, dtype=np.int16).reshape(1, 1, -1), info=info)


def test_ct_presets_scanner_windows_first_and_auto():
    scanner = WindowPreset("Scanner abdomen", 50.0, 350.0)
    repeat = WindowPreset("LUNG", -600.0, 1500.0)
    ct = _volume(np.linspace(-1024, 2000, 1000), "CT", [scanner, repeat])
    presets = window_presets(ct)
    assert presets[:2] == [scanner, repeat]
    names = [p.name for p in presets]
    for expected in ("Soft tissue", "Bone", "Brain", "Liver", "Mediastinum"):
        assert expected in names  # Mediastinum = the scanner's window, under the name users know
    assert [n.lower() for n in names].count("lung") == 1  # an exact repeat is offered once
    assert names[-2:] == ["Auto (1–99 %)", "Full range"]
    assert initial_window(ct) == scanner
    assert find_window_preset(presets, "lung").center == -600.0
    assert find_window_preset(presets, "SOFT-tissue") == CT_WINDOW_PRESETS[0]
    assert find_window_preset(presets, "auto").name.startswith("Auto")
    assert find_window_preset(presets, "nonsense") is None
    assert find_window_preset(presets, "") is None


def test_mr_and_unlabelled_volumes():
    mr = _volume(np.arange(0, 1000), "MR")
    presets = window_presets(mr)
    assert [p.name for p in presets] == ["Auto (1–99 %)", "Full range"]
    auto = initial_window(mr)
    assert auto.low == pytest.approx(9.99, abs=0.1) and auto.high == pytest.approx(989.01, abs=0.1)
    hu_like = _volume(np.linspace(-1024, 1500, 500))
    assert looks_like_ct(hu_like) and initial_window(hu_like).name == "Soft tissue"
    assert not looks_like_ct(_volume(np.arange(0, 255)))
    flat = _volume(np.full(10, 7))
    assert initial_window(flat).width > 0


# -- layouts --------------------------------------------------------------------------------
def test_layout_state_cells_maximise_and_restore():
    state = LayoutState()
    assert state.layout == DEFAULT_LAYOUT == "2x2" and set(state.cells()) == set(PANES)
    assert set(LAYOUT_NAMES) == {"2x2", "1x3", "axial", "coronal", "sagittal", "3d"}
    assert sorted(LAYOUTS["1x3"].values()) == [(0, 0), (0, 1), (0, 2)]
    state.toggle_maximised("coronal")
    assert state.cells() == {"coronal": (0, 0)} and not state.is_visible("axial")
    state.toggle_maximised("coronal")
    assert state.maximised is None and len(state.cells()) == 4
    state.set_layout("axial")
    state.toggle_maximised("axial")  # already alone: nothing to maximise
    assert state.maximised is None
    state.toggle_maximised("3d")
    assert state.cells() == {"3d": (0, 0)}
    assert LayoutState.from_strings(*state.to_strings()) == state
    assert LayoutState.from_strings("bogus", 7) == LayoutState()
    with pytest.raises(ValueError):
        LayoutState("5x5")
    with pytest.raises(ValueError):
        state.set_layout("nope")


def test_cli_layout_choices_match_the_layouts():
    from medviewer.cli import GUI_LAYOUTS, build_gui_parser

    assert set(GUI_LAYOUTS) == set(LAYOUT_NAMES)
    args = build_gui_parser().parse_args(["scan.nii.gz", "--layout", "1x3", "--preset", "lung", "--screenshot", "x.png"])
    assert (args.layout, args.preset, args.screenshot) == ("1x3", "lung", "x.png")
    with pytest.raises(SystemExit):
        build_gui_parser().parse_args(["--layout", "4x4"])


# -- outline, statistics, thumbnails ---------------------------------------------------------
def test_label_outline_keeps_only_borders():
    labels = np.zeros((7, 8), np.uint8)
    labels[1:6, 1:6] = 3
    labels[2:4, 2:4] = 5
    out = label_outline(labels)
    assert out.dtype == np.uint8
    assert out[3, 4] == 3 and out[1, 1] == 3 and out[5, 5] == 3  # ring of 3 touching 0 or 5
    assert out[2, 2] == 5 and out[3, 3] == 5  # the 2x2 block is all border
    assert np.all(out[labels == 0] == 0)
    inner = np.zeros((9, 9), np.uint8)
    inner[1:8, 1:8] = 1
    assert label_outline(inner)[4, 4] == 0  # interior removed
    assert label_outline(np.ones((3, 3), np.uint8))[1, 1] == 0
    assert label_outline(np.ones((3, 3), np.uint8))[0, 1] == 1  # image border counts as an edge
    buffer = np.zeros_like(inner)
    assert label_outline(inner, out=buffer) is buffer


def test_label_counter_follows_boxes():
    array = np.zeros((6, 10, 10), np.uint8)
    array[1:3, 2:5, 2:5] = 2
    counter = LabelCounter()
    counter.reset(array)
    assert counter.counts() == {2: 18}
    array[4, 0:2, 0:2] = 7
    counter.update(array, Box((4, 0, 0), (5, 2, 2)))
    assert counter.counts() == {2: 18, 7: 4}
    array[1, 2:5, 2:5] = 0
    counter.update(array, Box((1, 2, 2), (2, 5, 5)))
    assert counter.counts() == {2: 9, 7: 4}
    promoted = array.astype(np.uint16)
    promoted[0, 0, 0] = 300
    counter.update(promoted, Box((0, 0, 0), (1, 1, 1)))  # a new array: counted from scratch
    assert counter.counts() == {2: 9, 7: 4, 300: 1}
    assert volume_ml(1000, 1.5) == pytest.approx(1.5)
    assert [format_volume_ml(v) for v in (0, 0.0421, 3.567, 1250.44)] == ["0", "0.042", "3.57", "1250.4"]


def test_thumbnail_is_small_windowed_and_keeps_aspect():
    image = np.zeros((512, 256), np.int16)
    image[:, 128:] = 1000
    thumb = to_thumbnail(image, 64)
    assert thumb.dtype == np.uint8 and thumb.shape == (64, 32)
    assert thumb[:, :15].max() == 0 and thumb[:, 17:].min() == 255
    assert to_thumbnail(np.random.default_rng(0).random((20, 30, 3)), 64).shape == (20, 30)
    with pytest.raises(ValueError):
        to_thumbnail(np.zeros(5))


def test_recent_files_list_is_most_recent_first_and_capped(tmp_path):
    from medviewer.ui.settings import MAX_RECENT_FILES, updated_recent_files

    files: list[str] = []
    for n in range(12):
        files = updated_recent_files(files, str(tmp_path / f"scan{n}.nii"))
    assert len(files) == MAX_RECENT_FILES == 10
    assert files[0].endswith("scan11.nii") and files[-1].endswith("scan2.nii")
    files = updated_recent_files(files, str(tmp_path / "scan5.nii"))
    assert files[0].endswith("scan5.nii") and len(files) == 10 and len(set(files)) == 10


# -- layering ---------------------------------------------------------------------------------
PURE_RENDER_MODULES = (
    "mpr", "layout", "window_presets", "window_level", "label_outline", "segment_stats", "thumbnails",
    "orientation", "readout", "slicing",
)


def test_viewer_logic_is_free_of_qt_and_vtk():
    """The reslice, layout, preset and statistics logic runs (and is tested) without a GUI."""
    import subprocess
    import sys

    modules = ", ".join(f"medviewer.render.{name}" for name in PURE_RENDER_MODULES)
    code = (
        f"import sys, {modules};"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'vtkmodules', 'vtk', 'shiboken6'));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_render_package_never_imports_qt():
    import ast
    from pathlib import Path

    import medviewer.render

    for path in Path(medviewer.render.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad = [n for n in names if n.split(".")[0] in ("PySide6", "shiboken6") or n.startswith("medviewer.ui")]
            assert not bad, f"medviewer/render/{path.name} imports {bad}: keep Qt out of the render layer"
