"""Load a 300-slice 512x512 CT series: medviewer vs SimpleITK's bare ImageSeriesReader.

Also records memory: bytes held by volume + label map against the raw voxel bytes, and the
peak Python-side allocation during the load (tracemalloc), as ratios. The header scan is
also timed on its own, CPU seconds are kept next to wall time, and the machine's load
average is recorded because on a shared machine it moves every wall-clock number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.common import save_result, summarize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def write_case(folder: Path, slices: int, size: int) -> None:
    from dicom_fixtures import write_series

    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 2000, (slices, size, size), dtype=np.int16)
    write_series(folder, array, spacing=(0.7, 0.7, 1.0), rescale=(1.0, -1024.0), description="Benchmark CT")


def load_simpleitk(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayViewFromImage(reader.Execute())


def load_medviewer(folder: Path):
    from medviewer.io import load_volume

    return load_volume(folder)


def scan_medviewer(folder: Path):
    from medviewer.io.dicom import scan_dicom

    return scan_dicom(folder)


def _load_average() -> float:
    """1-minute load average; NaN where the system has none (Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_case(folder, args.slices, args.size)
        print(f"wrote {args.slices} slices in {time.perf_counter() - start:.1f} s")
        sitk_times, ours_times, scan_times = [], [], []
        sitk_cpu, ours_cpu = [], []  # CPU seconds (all threads): less sensitive to other load
        load_simpleitk(folder)  # warm the page cache for both
        load_medviewer(folder)
        load_before = _load_average()
        for _ in range(args.repeats):  # interleave so drift hits both equally
            t, c = time.perf_counter(), time.process_time()
            load_simpleitk(folder)
            sitk_times.append(time.perf_counter() - t)
            sitk_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            volume = load_medviewer(folder)
            ours_times.append(time.perf_counter() - t)
            ours_cpu.append(time.process_time() - c)
            t = time.perf_counter()
            scan_medviewer(folder)
            scan_times.append(time.perf_counter() - t)
        load_after = _load_average()
        tracemalloc.start()
        volume = load_medviewer(folder)
        from medviewer.model import LabelMap

        labels = LabelMap(volume.geometry)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    raw = volume.array.size * 2  # int16 CT as stored by the scanner
    result = {
        "case": f"{args.slices} x {args.size}x{args.size} int16 DICOM files",
        "simpleitk": summarize(sitk_times),
        "medviewer": summarize(ours_times),
        "medviewer_header_scan": summarize(scan_times),
        "load_ratio_vs_simpleitk": summarize(ours_times)["median_s"] / summarize(sitk_times)["median_s"],
        "cpu_s": {"simpleitk": summarize(sitk_cpu)["median_s"], "medviewer": summarize(ours_cpu)["median_s"]},
        "per_run_ratios": [round(ours / theirs, 3) for ours, theirs in zip(ours_times, sitk_times)],
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "memory_volume_plus_labels_vs_raw": (volume.array.nbytes + labels.array.nbytes) / raw,
        "peak_traced_during_load_vs_raw": peak / raw,
    }
    print(
        f"load: medviewer {result['medviewer']['median_s']:.2f} s, SimpleITK {result['simpleitk']['median_s']:.2f} s "
        f"-> ratio {result['load_ratio_vs_simpleitk']:.2f} (target <= 1.1); header scan "
        f"{result['medviewer_header_scan']['median_s']:.3f} s; load average {load_before:.1f} -> {load_after:.1f} "
        f"on {os.cpu_count()} cores; CPU medviewer {result['cpu_s']['medviewer']:.2f} s, "
        f"SimpleITK {result['cpu_s']['simpleitk']:.2f} s"
    )
    print(
        f"memory: volume+labels {result['memory_volume_plus_labels_vs_raw']:.2f}x raw (target <= 1.5), "
        f"peak during load {result['peak_traced_during_load_vs_raw']:.2f}x raw"
    )
    save_result("load", result)
    return result


if __name__ == "__main__":
    main()
