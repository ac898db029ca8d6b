"""Standard colours and terminology codes for common anatomical structures.

When a user names a segment "liver" it should look like a liver in every tool they open
it in: the colours follow 3D Slicer's GenericAnatomyColors table, and each entry carries
SNOMED CT codes (the DICOM CID 7150/7151 category and type) so DICOM SEG and Slicer's
``.seg.nrrd`` terminology tags describe the segment in machine-readable terms too.
Names are matched case-insensitively, ignoring spaces, underscores and hyphens and the
order of a laterality word ("Left kidney", "kidney_left", "L kidney").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """One coded concept (value, coding scheme, meaning), e.g. ('10200004', 'SCT', 'Liver')."""

    value: str
    scheme: str
    meaning: str

    def slicer_triplet(self) -> str:
        """Slicer's ``scheme^value^meaning`` form used inside terminology tags."""
        return f"{self.scheme}^{self.value}^{self.meaning}"


ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")


@dataclass(frozen=True)
class AnatomyEntry:
    """A structure's display name, colour (RGB 0-255) and terminology codes."""

    name: str
    color: tuple[int, int, int]
    category: Code
    type: Code
    modifier: Code | None = None
    synonyms: tuple[str, ...] = ()

    def slicer_terminology(self) -> str:
        """The ``TerminologyEntry`` tag value Slicer writes into ``.seg.nrrd`` headers."""
        modifier = self.modifier.slicer_triplet() if self.modifier else "^^"
        return (
            "Segmentation category and type - 3D Slicer General Anatomy list"
            f"~{self.category.slicer_triplet()}~{self.type.slicer_triplet()}~{modifier}"
            "~Anatomic codes - DICOM master list~^^~^^"
        )


def _organ(name, color, value, meaning, modifier=None, synonyms=()):
    return AnatomyEntry(name, color, ANATOMICAL_STRUCTURE, Code(value, "SCT", meaning), modifier, tuple(synonyms))


def _finding(name, color, value, meaning, synonyms=()):
    return AnatomyEntry(name, color, ABNORMAL_STRUCTURE, Code(value, "SCT", meaning), None, tuple(synonyms))


#: Colours from Slicer's GenericAnatomyColors; codes from DICOM PS3.16 (SNOMED CT).
ANATOMY_TABLE: tuple[AnatomyEntry, ...] = (
    _organ("liver", (221, 130, 101), "10200004", "Liver", synonyms=("hepar",)),
    _organ("spleen", (157, 108, 162), "78961009", "Spleen"),
    _organ("kidney", (185, 102, 83), "64033007", "Kidney", synonyms=("kidneys",)),
    _organ("left kidney", (185, 102, 83), "64033007", "Kidney", LEFT),
    _organ("right kidney", (185, 102, 83), "64033007", "Kidney", RIGHT),
    _organ("pancreas", (249, 180, 111), "15776009", "Pancreas"),
    _organ("aorta", (224, 97, 76), "15825003", "Aorta"),
    _organ("inferior vena cava", (0, 151, 206), "64131007", "Inferior vena cava", synonyms=("ivc", "vena cava")),
    _organ("portal vein", (0, 151, 206), "32764006", "Portal vein"),
    _organ("heart", (206, 110, 84), "80891009", "Heart"),
    _organ("lung", (197, 165, 145), "39607008", "Lung", synonyms=("lungs",)),
    _organ("left lung", (197, 165, 145), "39607008", "Lung", LEFT),
    _organ("right lung", (197, 165, 145), "39607008", "Lung", RIGHT),
    _organ("trachea", (182, 228, 255), "44567001", "Trachea"),
    _organ("esophagus", (211, 171, 143), "32849002", "Esophagus", synonyms=("oesophagus",)),
    _organ("stomach", (216, 132, 105), "69695003", "Stomach"),
    _organ("duodenum", (255, 253, 229), "38848004", "Duodenum"),
    _organ("small intestine", (205, 167, 142), "30315005", "Small intestine", synonyms=("small bowel",)),
    _organ("colon", (204, 168, 143), "71854001", "Colon", synonyms=("large bowel",)),
    _organ("rectum", (204, 168, 143), "34402009", "Rectum"),
    _organ("gallbladder", (139, 150, 98), "28231008", "Gallbladder", synonyms=("gall bladder",)),
    _organ("adrenal gland", (249, 186, 150), "23451007", "Adrenal gland", synonyms=("adrenal",)),
    _organ("left adrenal gland", (249, 186, 150), "23451007", "Adrenal gland", LEFT, synonyms=("left adrenal",)),
    _organ("right adrenal gland", (249, 186, 150), "23451007", "Adrenal gland", RIGHT, synonyms=("right adrenal",)),
    _organ("bladder", (222, 154, 132), "89837001", "Bladder", synonyms=("urinary bladder",)),
    _organ("prostate", (230, 158, 140), "41216001", "Prostate"),
    _organ("uterus", (255, 181, 158), "35039007", "Uterus"),
    _organ("thyroid", (62, 162, 114), "69748006", "Thyroid", synonyms=("thyroid gland",)),
    _organ("brain", (250, 250, 225), "12738006", "Brain"),
    _organ("spinal cord", (244, 214, 49), "2748008", "Spinal cord"),
    _organ("bone", (241, 214, 145), "272673000", "Bone", synonyms=("bones", "skeleton")),
    _organ("vertebra", (226, 202, 134), "51282000", "Vertebra", synonyms=("vertebrae",)),
    _organ("spine", (212, 188, 102), "421060004", "Spine", synonyms=("vertebral column", "spinal column")),
    _organ("rib", (253, 232, 158), "113197003", "Rib", synonyms=("ribs",)),
    _organ("sternum", (244, 217, 154), "56873002", "Sternum"),
    _organ("skull", (241, 213, 144), "89546000", "Skull"),
    _organ("femur", (255, 238, 170), "71341001", "Femur"),
    _organ("muscle", (192, 104, 88), "71616004", "Muscle"),
    _organ("fat", (230, 220, 70), "256674009", "Fat"),
    _organ("skin", (177, 122, 101), "39937001", "Skin"),
    _organ("artery", (216, 101, 79), "51114001", "Artery"),
    _organ("vein", (0, 151, 206), "29092000", "Vein"),
    _organ("lymph node", (68, 172, 100), "59441001", "Lymph Node"),
    _finding("tumor", (144, 238, 144), "108369006", "Neoplasm", synonyms=("tumour", "neoplasm")),
    _finding("lesion", (144, 238, 144), "52988006", "Lesion"),
    _finding("mass", (144, 238, 144), "4147007", "Mass"),
    _finding("nodule", (144, 238, 144), "27925004", "Nodule"),
    _finding("cyst", (205, 205, 100), "367643001", "Cyst"),
    _finding("hemorrhage", (188, 65, 28), "50960005", "Hemorrhage", synonyms=("haemorrhage", "bleeding")),
    _finding("edema", (140, 224, 228), "79654002", "Edema", synonyms=("oedema",)),
)

#: Category/type used for segments whose name matches nothing in the table.
GENERIC_TISSUE = AnatomyEntry("tissue", (128, 174, 128), TISSUE, TISSUE)

_SIDE_WORDS = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}


def normalize_name(name: str) -> str:
    """Lower case, words separated by single spaces, laterality moved to the front."""
    words = [w for w in re.split(r"[\s_\-.]+", name.strip().lower()) if w]
    sides = [_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS]
    rest = [w for w in words if w not in _SIDE_WORDS]
    if len(sides) == 1 and rest:
        return " ".join([sides[0], *rest])
    return " ".join(words)


def _build_index() -> dict[str, AnatomyEntry]:
    index: dict[str, AnatomyEntry] = {}
    for entry in ANATOMY_TABLE:
        for alias in (entry.name, *entry.synonyms):
            index.setdefault(normalize_name(alias), entry)
    return index


_INDEX = _build_index()


def lookup_anatomy(name: str | None) -> AnatomyEntry | None:
    """The table entry a segment name refers to, or None ("Liver" and "liver_1" both match liver)."""
    if not name:
        return None
    key = normalize_name(name)
    if key in _INDEX:
        return _INDEX[key]
    trimmed = re.sub(r"( \d+)+$", "", key)  # "liver 2", "tumor 1" -> numbered copies
    return _INDEX.get(trimmed)


def anatomy_color(name: str | None) -> tuple[int, int, int] | None:
    entry = lookup_anatomy(name)
    return entry.color if entry else None


def suggest_names(prefix: str, limit: int = 10) -> list[str]:
    """Table names starting with (then containing) ``prefix``, for a name field's completer."""
    key = normalize_name(prefix)
    names = [e.name for e in ANATOMY_TABLE]
    starts = [n for n in names if n.startswith(key)]
    contains = [n for n in names if key in n and n not in starts]
    return (starts + contains)[:limit]
