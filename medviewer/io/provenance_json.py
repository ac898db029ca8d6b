"""Provenance sidecar: how every segment came to be, as JSON next to an export.

For each segment: its creation, every AI call accepted into it (model id, name, version,
checkpoint SHA-256, prompts in LPS millimetres, time), every manual edit (tool,
parameters, voxels changed, the editing restrictions in force, time), imports and merges.
The scan is identified by its UIDs and geometry, never by patient identifiers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medviewer import __version__
from medviewer.io.deidentify import redact_path, redact_paths
from medviewer.io.safety import check_output, write_text_atomic
from medviewer.model.provenance import now_iso
from medviewer.model.segments import ProvenanceEntry, Segment

FORMAT_NAME = "medviewer-provenance"
FORMAT_VERSION = 1


def entry_to_dict(entry: ProvenanceEntry) -> dict[str, Any]:
    return {"kind": entry.kind, "time": entry.time, "details": entry.details}


def entry_from_dict(data: dict[str, Any]) -> ProvenanceEntry:
    return ProvenanceEntry(str(data.get("kind", "")), str(data.get("time", "")), dict(data.get("details") or {}))


def scan_reference(volume, deidentify: bool = False) -> dict[str, Any]:
    """What identifies the scan a segmentation belongs to (UIDs, source path, grid).

    ``deidentify`` turns the source path and the scan's name (often a folder or file name
    holding the patient's name) into opaque tokens; UIDs and the grid stay.
    """
    if volume is None:
        return {}
    info, geometry = volume.info, volume.geometry
    return {
        "name": redact_path(info.name) if deidentify else info.name,
        "source": redact_path(info.source) if deidentify else info.source,
        "modality": info.modality,
        "series_instance_uid": info.series_instance_uid,
        "study_instance_uid": info.study_instance_uid,
        "frame_of_reference_uid": info.frame_of_reference_uid,
        "grid": {
            "size_ijk": list(geometry.size_xyz),
            "spacing_mm": list(geometry.spacing),
            "origin_lps_mm": list(geometry.origin),
            "direction": list(geometry.direction),
        },
    }


def provenance_document(segments: Iterable[Segment], volume=None, labels_file: str | None = None,
                        deidentify: bool = False) -> dict[str, Any]:
    """The sidecar's content; ``deidentify`` redacts every file-system path (see docs/privacy.md)."""
    segments = list(segments)
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "written": now_iso(),
        "software": {"name": "medviewer", "version": __version__},
        "coordinates": "LPS (DICOM patient) millimetres",
        "scan": scan_reference(volume),
        "labels_file": labels_file,
        "segments": [
            {
                "label": s.label,
                "name": s.name,
                "color_rgb": list(s.color),
                "ai_calls": sum(1 for e in s.provenance if e.kind == "ai"),
                "manual_edits": sum(1 for e in s.provenance if e.kind == "manual"),
                "history": [entry_to_dict(e) for e in s.provenance],
            }
            for s in segments
        ],
    }
    if deidentify:
        document = redact_paths(document)
        document["scan"] = scan_reference(volume, deidentify=True)
        document["deidentified"] = True
    return document


def write_provenance_json(path: str | Path, segments: Iterable[Segment], volume=None, labels_file: str | None = None,
                          overwrite: bool = False, protected: Iterable = (), deidentify: bool = False) -> Path:
    path = check_output(path, overwrite, protected)
    document = provenance_document(segments, volume, labels_file, deidentify)
    return write_text_atomic(path, json.dumps(document, indent=2, default=_fallback) + "\n")


def read_provenance_json(path: str | Path) -> dict[int, list[ProvenanceEntry]]:
    """Provenance per label value from a sidecar (to re-attach after importing the labels)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {int(s["label"]): [entry_from_dict(e) for e in s.get("history", [])] for s in data.get("segments", [])}


def _fallback(value):
    """numpy scalars and other stragglers become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
