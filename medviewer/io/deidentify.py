"""Optional removal of patient identifiers from exports (DICOM SEG, provenance JSON).

What is stripped, what is kept and why is written down in ``docs/privacy.md``; the
lists below are that document's source of truth. In short: patient and study
identifiers and person names go, file-system paths become opaque tokens, and the DICOM
UIDs stay, because a SEG that no longer references its source series cannot be used.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath
from typing import Any

#: Replaced by a fixed value (Type 1/2 attributes a SEG must carry).
DICOM_REPLACED = {"PatientName": "ANONYMOUS", "PatientID": "ANONYMOUS"}

#: Emptied: Type 2 attributes of the Patient / General Study modules (present, but empty).
DICOM_EMPTIED = (
    "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "StudyID", "AccessionNumber",
)

#: Removed wherever they occur (Type 3 identifying attributes a source may carry over).
DICOM_REMOVED = (
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientComments",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "IssuerOfPatientID",
    "EthnicGroup", "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "Occupation",
    "StudyDescription", "AdmittingDiagnosesDescription", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "PhysiciansOfRecord", "RequestingPhysician",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
    "RequestAttributesSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
)

#: Provenance detail keys whose string values are file-system paths.
PATH_KEYS = ("source", "path", "file", "labels_file", "checkpoint", "checkpoint_path", "scan_source")

_ABSOLUTE_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def redact_path(text: str) -> str:
    """An opaque, stable token for a path: ``redacted-<12 hex of SHA-256><suffix>``.

    Folder and file names often hold the patient's name, so neither is kept; the same
    path always gives the same token, so a user holding the originals can still match
    exports to scans. The suffix (``.nii.gz``, ``.dcm``) is kept: it names a format only.
    """
    if not text:
        return text
    digest = hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:12]
    name = PurePath(str(text).replace("\\", "/")).name.lower()
    double = [s for s in (".nii.gz", ".seg.nrrd") if name.endswith(s)]
    suffix = double[0] if double else PurePath(name).suffix
    return f"redacted-{digest}{suffix if len(suffix) <= 9 else ''}"


def redact_paths(value: Any, key: str = "") -> Any:
    """A copy of a JSON-like value with every path (by key, or by looking absolute) redacted."""
    if isinstance(value, dict):
        return {k: redact_paths(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_paths(v, key) for v in value]
    names_a_path = key in PATH_KEYS or key.endswith(("_path", "_file"))
    if isinstance(value, str) and value and (names_a_path or _ABSOLUTE_PATH.match(value)):
        return redact_path(value)
    return value


def deidentify_dataset(dataset) -> list[str]:
    """Strip patient identifiers from a pydicom dataset in place; returns the keywords changed.

    UIDs are kept on purpose (see module docstring). Every person-name (PN) element left
    anywhere, nested sequences included, is emptied as well.
    """
    changed: list[str] = []
    for keyword, value in DICOM_REPLACED.items():
        if getattr(dataset, keyword, None) != value:
            changed.append(keyword)
        setattr(dataset, keyword, value)
    for keyword in DICOM_EMPTIED:
        if keyword in dataset and dataset.data_element(keyword).value not in ("", None):
            changed.append(keyword)
        setattr(dataset, keyword, "")
    replaced_tags = {dataset.data_element(k).tag for k in DICOM_REPLACED}

    def scrub(ds) -> None:
        for keyword in DICOM_REMOVED:
            if keyword in ds:
                del ds[keyword]
                changed.append(keyword)
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value:
                    scrub(item)
            elif element.VR == "PN" and element.tag not in replaced_tags and element.value not in ("", None):
                element.value = ""
                changed.append(element.keyword or str(element.tag))

    scrub(dataset)
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "medviewer: patient identifiers and names removed; UIDs retained"
    return sorted(set(changed))
