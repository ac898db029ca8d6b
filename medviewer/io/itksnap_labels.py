"""ITK-SNAP label description files: one line per label with colour, opacity, visibility, name.

ITK-SNAP reads and writes these next to a label image (Segmentation > Export/Import Label
Descriptions); the format is whitespace-separated ``IDX R G B A VIS MSH "LABEL"``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from medviewer.io.errors import CorruptFileError, UnsupportedFormatError
from medviewer.io.safety import check_output, write_text_atomic
from medviewer.model.segments import Segment

_HEADER = """################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
"""


def _line(label: int, color, alpha: float, visible: bool, name: str) -> str:
    quoted = name.replace('"', "'").replace("\n", " ")
    r, g, b = (int(c) for c in color)
    return f'{label:5d} {r:5d} {g:4d} {b:4d} {alpha:8g} {int(visible):2d} {int(visible):2d}    "{quoted}"'


def format_label_description(segments: Iterable[Segment], alpha: float = 1.0) -> str:
    lines = [_HEADER.rstrip("\n"), _line(0, (0, 0, 0), 0, False, "Clear Label")]
    lines += [_line(s.label, s.color, alpha, s.visible, s.name) for s in segments]
    return "\n".join(lines) + "\n"


def write_label_description(path: str | Path, segments: Iterable[Segment], overwrite: bool = False,
                            protected: Iterable[str | Path] = ()) -> Path:
    path = check_output(path, overwrite, protected)
    return write_text_atomic(path, format_label_description(segments))


def parse_label_description(text: str, path=None) -> list[Segment]:
    """Segments from a label description (label 0, 'Clear Label', is skipped)."""
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parts = shlex.split(line)
            label = int(parts[0])
            color = tuple(max(0, min(255, int(float(v)))) for v in parts[1:4])
            visible = bool(int(float(parts[5]))) if len(parts) > 5 else True
            name = parts[7] if len(parts) > 7 else f"Label {label}"
        except (ValueError, IndexError) as exc:
            raise CorruptFileError(f"line {number} is not 'IDX R G B A VIS MSH \"LABEL\"' ({exc})", path) from None
        if label == 0:
            continue
        if not 0 < label <= 65535:
            raise CorruptFileError(f"line {number}: label {label} is outside 1..65535", path)
        segments.append(Segment(label=label, name=name, color=color, visible=visible))  # type: ignore[arg-type]
    return segments


def read_label_description(path: str | Path) -> list[Segment]:
    path = Path(path)
    if not path.is_file():
        raise UnsupportedFormatError("no such file", path)
    return parse_label_description(path.read_text(encoding="utf-8", errors="replace"), path)
