"""A short, bounded run of the reader fuzzer (the long one is benchmarks/fuzz_readers.py).

Mutated bytes of valid DICOM, NIfTI, NRRD, .seg.nrrd and DICOM SEG files must load or
raise medviewer's typed error, never a foreign exception; each example also runs under
a memory ceiling so a lying header that is believed shows up as a failure here.
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_support import build_targets, mutations
from medviewer.io.errors import MedViewerIOError

EXAMPLES = 25
PEAK_BYTES = 256 * 2**20


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    return {t.name: t for t in build_targets(tmp_path_factory.mktemp("seeds"))}


@pytest.mark.parametrize("name", ["dicom", "nifti", "nifti_gz", "nrrd", "seg_nrrd", "dicom_seg"])
def test_mutated_files_load_or_raise_typed_errors(targets, tmp_path, name):
    target = targets[name]
    path = tmp_path / f"fuzzed{target.suffix}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutations(target.seed))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        tracemalloc.start()
        try:
            target.read(path)
        except MedViewerIOError as exc:
            assert path.name in str(exc) or "series" in str(exc)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < PEAK_BYTES, f"{peak / 2**20:.0f} MiB allocated for a {len(data)}-byte file"

    check()
