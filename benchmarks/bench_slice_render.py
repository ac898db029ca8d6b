"""Slice change to rendered frame: medviewer's slice view vs a bare VTK reslice render.

Case: a 512x512x300 int16 CT volume with a uint8 label map (some segments painted), shown
in the real :class:`~medviewer.ui.slice_view.SliceView` (scan reslice, label reslice with
lookup table, crosshair, corner text). One sample = move to the next slice and render
the frame synchronously (``Render()`` returns after the buffer swap).

Baseline, in the same process and window size: vtkImageData (zero-copy) ->
vtkImageReslice (same reslice axes) -> vtkImageSliceMapper -> vtkImageSlice with the same
window/level in a plain vtkRenderWindow, moving the slice by changing the reslice axes.

Also measured, in the 2x2 main window (1600x1000): the frame of the scrolled view (what
the user waits for; the linked views follow at a throttled rate), the worst case of all
four views repainted for one step (axial re-slices, the coronal and sagittal crosshairs
and the 3D planes move), and memory: resident bytes that showing the volume and labels in
three slice views adds on top of the volume + label map themselves.

Run under a display: ``xvfb-run -a -s "-screen 0 1600x1000x24" python -m benchmarks.bench_slice_render``
"""

from __future__ import annotations

import argparse
import gc
import sys

import numpy as np

from benchmarks.common import save_result, summarize, time_calls


def resident_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def make_case(slices: int, size: int):
    """CT-like int16 volume (air, body, organs, noise) and labels; built slice by slice."""
    from medviewer.model import Geometry, LabelMap, Volume, VolumeInfo

    rng = np.random.default_rng(0)
    array = np.empty((slices, size, size), dtype=np.int16)
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) / (size * 0.42)) ** 2 + ((y - size / 2) / (size * 0.33)) ** 2 <= 1.0
    organ = ((x - size * 0.38) / (size * 0.12)) ** 2 + ((y - size * 0.48) / (size * 0.10)) ** 2 <= 1.0
    base = np.where(body, 40, -1000).astype(np.int16)
    base[organ] = 60
    for k in range(slices):
        array[k] = base + rng.integers(-20, 20, (size, size), dtype=np.int16)
    geometry = Geometry(array.shape, (0.7, 0.7, 1.0), (-size * 0.35, -size * 0.35, -slices * 0.5))
    volume = Volume(array, geometry, VolumeInfo(name="benchmark CT", modality="CT", units="HU"))
    labels = LabelMap(geometry)
    labels.array[:, organ] = 1
    labels.array[slices // 3 : 2 * slices // 3, size // 2 - 20 : size // 2 + 20, size // 2 - 20 : size // 2 + 20] = 2
    return volume, labels


class BareReslice:
    """The minimal VTK pipeline that shows one resliced slice of the same array."""

    def __init__(self, volume, width: int, height: int):
        from vtkmodules.util.numpy_support import numpy_to_vtk
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        from vtkmodules.vtkImagingCore import vtkImageReslice
        from vtkmodules.vtkRenderingCore import (
            vtkImageProperty,
            vtkImageSlice,
            vtkImageSliceMapper,
            vtkRenderer,
            vtkRenderWindow,
        )

        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401

        nz, ny, nx = volume.shape
        self.image = vtkImageData()
        self.image.SetDimensions(nx, ny, nz)
        self.image.SetSpacing(*volume.geometry.spacing)
        self._scalars = numpy_to_vtk(volume.array.reshape(-1), deep=False)
        self.image.GetPointData().SetScalars(self._scalars)
        self.reslice = vtkImageReslice()
        self.reslice.SetInputData(self.image)
        self.reslice.SetOutputDimensionality(2)
        self.axes = vtkMatrix4x4()
        self.reslice.SetResliceAxes(self.axes)
        self.reslice.SetInterpolationModeToLinear()
        sx, sy, sz = volume.geometry.spacing
        self.reslice.SetOutputSpacing(sx, sy, 1.0)
        self.reslice.SetOutputOrigin(0.0, 0.0, 0.0)
        self.reslice.SetOutputExtent(0, nx - 1, 0, ny - 1, 0, 0)
        self.slice_spacing = sz
        mapper = vtkImageSliceMapper()
        mapper.SetInputConnection(self.reslice.GetOutputPort())
        prop = vtkImageProperty()
        prop.SetColorWindow(400)
        prop.SetColorLevel(40)
        prop.SetInterpolationTypeToLinear()
        actor = vtkImageSlice()
        actor.SetMapper(mapper)
        actor.SetProperty(prop)
        self.renderer = vtkRenderer()
        self.renderer.AddViewProp(actor)
        self.window = vtkRenderWindow()
        self.window.SetSize(width, height)
        self.window.SetMultiSamples(0)  # as in the slice views: MSAA does nothing for images
        self.window.AddRenderer(self.renderer)
        # Same framing as the slice view's "fit": the slice fills the view with a 3 % margin,
        # so both draw the same number of pixels.
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        centre_x, centre_y = (nx - 1) * sx / 2.0, (ny - 1) * sy / 2.0
        camera.SetFocalPoint(centre_x, centre_y, 0.0)
        camera.SetPosition(centre_x, centre_y, -10.0 * nx * sx)
        camera.SetViewUp(0.0, -1.0, 0.0)
        camera.SetParallelScale(max(ny * sy, nx * sx * height / width) / 2.0 * 1.03)
        self.renderer.ResetCameraClippingRange()
        self.index = nz // 2
        self.depth = nz

    def show_slice(self, k: int) -> None:
        self.axes.SetElement(2, 3, k * self.slice_spacing)
        self.reslice.Modified()
        self.window.Render()

    def close(self) -> None:
        self.window.Finalize()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--view-size", type=int, default=512, help="edge of the square slice view in pixels (512: the slice shown 1:1)")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QCoreApplication, QEvent, QSettings
    from medviewer.ui.app import get_application

    app = get_application()
    volume, labels = make_case(args.slices, args.size)
    raw_bytes = volume.array.nbytes
    labels.array[:] = labels.array  # touch the label pages so their memory is counted before the views
    gc.collect()

    from medviewer.model import SegmentTable
    from medviewer.ui.slice_view import SliceView

    segments = SegmentTable()
    segments.ensure([1, 2])

    views = {}
    for orientation in ("axial", "coronal", "sagittal"):
        view = SliceView(orientation)
        view.resize(args.view_size, args.view_size + view.header.height())
        view.show()
        views[orientation] = view
    for _ in range(5):
        app.processEvents()
    for view in views.values():
        view.render_now()  # OpenGL contexts and buffers exist before the memory baseline
    gc.collect()
    rss_before_views = resident_bytes()
    for view in views.values():
        view.set_volume(volume, labels, segments)
    for _ in range(5):
        app.processEvents()
    for view in views.values():
        view.render_now()
    rss_after_views = resident_bytes()
    view = views["axial"]
    zero_copy = bool(view.slice_renderer._scan.shared.is_zero_copy and view.slice_renderer._labels.shared.is_zero_copy)
    width, height = view.render_window.GetSize()

    bare = BareReslice(volume, width, height)
    bare.show_slice(bare.index)

    direction = [1]

    def medviewer_step():
        if view.slice_index + direction[0] >= view.num_slices - 1 or view.slice_index + direction[0] <= 0:
            direction[0] = -direction[0]
        view.step_slice(direction[0])
        view.render_now()

    bare_direction = [1]

    def bare_step():
        if not 0 < bare.index + bare_direction[0] < bare.depth - 1:
            bare_direction[0] = -bare_direction[0]
        bare.index += bare_direction[0]
        bare.show_slice(bare.index)

    ours, baseline = [], []
    chunk = 20
    for _ in range(max(1, args.repeats // chunk)):  # interleave so drift hits both equally
        ours += time_calls(medviewer_step, chunk, warmup=2)
        baseline += time_calls(bare_step, chunk, warmup=2)
        app.processEvents()

    for v in views.values():
        v.shutdown()
        v.close()
        v.deleteLater()
    bare.close()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del views, view
    gc.collect()

    # The whole 2x2 window: one axial step re-slices the axial view; coronal and sagittal
    # move their crosshair, the 3D view its planes.
    import tempfile

    from medviewer.model import Document
    from medviewer.ui.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(f"{tmp}/bench.ini", QSettings.Format.IniFormat)
        document = Document()
        window = MainWindow(document, settings=settings)
        window.resize(1600, 1000)
        window.show()
        document.set_labels(volume, labels, segments)
        document.add_volume(volume)
        for _ in range(50):
            app.processEvents()
            if not getattr(window.view3d, "busy", False):
                break
            QCoreApplication.processEvents()
            import time as _time

            _time.sleep(0.1)
        window.render_all()
        axial = window.axial_view
        window_direction = [1]

        def window_step():
            """What the user waits for: the scrolled view's frame (the others follow, throttled)."""
            if not 0 < axial.slice_index + window_direction[0] < axial.num_slices - 1:
                window_direction[0] = -window_direction[0]
            axial.step_slice(window_direction[0])
            axial.render_now()

        def window_step_all():
            """Worst case: every view of the 2x2 layout repainted for the same step."""
            if not 0 < axial.slice_index + window_direction[0] < axial.num_slices - 1:
                window_direction[0] = -window_direction[0]
            axial.step_slice(window_direction[0])
            window.render_all()

        full_window = time_calls(window_step, max(20, args.repeats // 4), warmup=2)
        window.render_all()
        all_views = time_calls(window_step_all, max(10, args.repeats // 10), warmup=1)
        window.close()
        window.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        del window
        gc.collect()

    ours_summary, bare_summary = summarize(ours), summarize(baseline)
    result = {
        "case": f"{args.slices} x {args.size}x{args.size} int16 CT + uint8 labels, axial view {width}x{height} px, linear interpolation",
        "medviewer_slice_view": ours_summary,
        "bare_vtk_reslice": bare_summary,
        "median_ratio_vs_bare": ours_summary["median_s"] / bare_summary["median_s"],
        "p95_ratio_vs_bare": ours_summary["p95_s"] / bare_summary["p95_s"],
        "target_median_s": 0.016,
        "window_2x2_scrolled_view_step": summarize(full_window),
        "window_2x2_all_views_step": summarize(all_views),
        "zero_copy_volume_and_labels": zero_copy,
        "raw_voxel_bytes": raw_bytes,
        "memory_volume_plus_labels_vs_raw": (volume.array.nbytes + labels.array.nbytes) / raw_bytes,
        "views_added_bytes": rss_after_views - rss_before_views,
        "memory_volume_labels_views_vs_raw": (volume.array.nbytes + labels.array.nbytes + rss_after_views - rss_before_views) / raw_bytes,
    }
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    print(f"slice view:   median {ms(ours_summary['median_s'])}, p95 {ms(ours_summary['p95_s'])} (target median <= 16 ms)")
    print(f"bare VTK:     median {ms(bare_summary['median_s'])}, p95 {ms(bare_summary['p95_s'])}")
    print(f"ratio:        median {result['median_ratio_vs_bare']:.2f}, p95 {result['p95_ratio_vs_bare']:.2f}")
    full, every = result["window_2x2_scrolled_view_step"], result["window_2x2_all_views_step"]
    print(f"2x2 window:   scrolled view median {ms(full['median_s'])}, p95 {ms(full['p95_s'])}; "
          f"all four views median {ms(every['median_s'])}, p95 {ms(every['p95_s'])}")
    print(
        f"memory:       volume + labels = {result['memory_volume_plus_labels_vs_raw']:.2f}x raw (target <= 1.5), "
        f"shared with VTK zero-copy: {zero_copy}; showing them in three views adds "
        f"{result['views_added_bytes'] / 2**20:.1f} MiB (2D slice buffers, textures, OpenGL driver) -> "
        f"{result['memory_volume_labels_views_vs_raw']:.3f}x raw in all"
    )
    save_result("slice_render", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
