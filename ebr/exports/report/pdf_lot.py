"""Page layout of the lot disposition package (fpdf2): header, footer and simple blocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import XPos, YPos

_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_RED = (180, 20, 20)
_GREY = (110, 110, 110)


class LotPDF(FPDF):
    """An A4 document naming the lot and the package hash on every page."""

    def __init__(self, coi: str, sha256: str, mark: str | None) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.coi = coi
        self.sha256 = sha256
        self.mark = mark
        self.set_margins(12, 18, 12)
        self.set_auto_page_break(True, margin=15)
        self.add_font("dejavu", "", str(_FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("dejavu", "B", str(_FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_font("dejavu", size=9)
        self.set_title(f"Lot disposition package {coi}")
        self.set_author("cellbatch")
        self.set_creator("cellbatch lot package")

    def header(self) -> None:
        """Lot left, simulation mark centre, document name right."""
        self.set_y(6)
        self.set_font("dejavu", "B", 8)
        self.cell(60, 5, f"Lot {self.coi}")
        self.set_text_color(*_RED)
        self.cell(self.epw - 120, 5, self.mark or "", align="C")
        self.set_text_color(*_GREY)
        self.set_font("dejavu", "", 7)
        self.cell(60, 5, "cellbatch lot disposition package", align="R")
        self.set_text_color(0, 0, 0)
        self.set_y(self.t_margin)

    def footer(self) -> None:
        """Package hash left, page number right."""
        self.set_y(-11)
        self.set_font("dejavu", "", 7)
        self.set_text_color(*_GREY)
        self.cell(self.epw - 40, 5, f"package sha256 {self.sha256}")
        self.cell(40, 5, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    def title_block(self, title: str, subtitle: str) -> None:
        """The document title."""
        self.set_font("dejavu", "B", 15)
        self.multi_cell(0, 8, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("dejavu", "", 10)
        self.multi_cell(0, 6, subtitle, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)

    def heading(self, text: str) -> None:
        """A section heading."""
        if self.get_y() > self.page_break_trigger - 30:
            self.add_page()
        self.ln(3)
        self.set_font("dejavu", "B", 11)
        self.multi_cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("dejavu", "", 8.5)

    def subheading(self, text: str) -> None:
        """A smaller heading inside a section."""
        self.ln(1)
        self.set_font("dejavu", "B", 9)
        self.multi_cell(0, 5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("dejavu", "", 8)

    def kv(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Key: value lines."""
        for key, value in pairs:
            self.set_font("dejavu", "B", 8.5)
            self.cell(45, 5, key)
            self.set_font("dejavu", "", 8.5)
            self.multi_cell(0, 5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def lines(self, items: Sequence[str]) -> None:
        """A bulleted list."""
        self.set_font("dejavu", "", 8.5)
        for item in items:
            self.multi_cell(0, 5, f"• {item}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def grid(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A wrapped table (or 'none' when empty)."""
        if not rows:
            self.set_font("dejavu", "", 8)
            self.multi_cell(0, 5, "none", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            return
        self.set_font("dejavu", "", 7)
        with self.table(
            headings_style=_bold(), line_height=3.6, text_align="LEFT", padding=0.8
        ) as grid:
            grid.row([str(h) for h in headers])
            for row in rows:
                grid.row([str(cell) for cell in row])
        self.set_font("dejavu", "", 8.5)


def _bold():  # type: ignore[no-untyped-def]
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD")
