"""Render resources/medviewer.svg to the PNG sizes desktops and installers want.

    python packaging/render_icon.py            (writes resources/medviewer.png, 256 x 256)
    python packaging/render_icon.py --size 512 --output out.png

The SVG is the source; the PNG is committed so nothing needs Qt at build time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render(svg: Path, output: Path, size: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - keeps Qt alive
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(output), "PNG"):
        raise SystemExit(f"{output}: could not write the PNG")
    print(f"wrote {output} ({size} x {size})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", default=str(ROOT / "resources" / "medviewer.svg"))
    parser.add_argument("--output", default=str(ROOT / "resources" / "medviewer.png"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    render(Path(args.svg), Path(args.output), args.size)


if __name__ == "__main__":
    main()
