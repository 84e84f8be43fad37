"""Human-readable PDF copy of a batch record (21 CFR Part 11 §11.10(b)).

Sections: cover, summary, procedure timeline, formula (master vs actual), one trend
chart per monitored CPP, alarms, setpoint writes, review by exception, electronic
signatures, audit trail (every journal entry) and hash manifest. A simulation batch
carries "SIMULATION — not for GMP use" on every page.

fpdf2 and matplotlib are imported inside the functions so that importing `ebr` (and
starting `cellbatch`) stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ebr.exports.report.analysis import Record, analyse
from ebr.record.store import Store

if TYPE_CHECKING:
    from ebr.exports.report.pdf import RecordPDF


def build_pdf(store: Store, batch_id: str) -> tuple[RecordPDF, bytes]:
    """Lay out the PDF of `batch_id`; return the document object and its bytes."""
    return render_pdf(analyse(store, batch_id))


def render_pdf(record: Record) -> tuple[RecordPDF, bytes]:
    """Lay out the PDF of an analysed record; return the document object and its bytes."""
    # Imported here, not at module level: fpdf2 and matplotlib are slow to import.
    # Charts draw on matplotlib's Agg canvas directly (no pyplot, no backend switch).
    from ebr.exports.report import pdf

    return pdf.render(record)


def export_pdf(store: Store, batch_id: str, out: Path) -> Path:
    """Write the PDF record of `batch_id` to `out` (whole, then renamed); return `out`."""
    _doc, data = build_pdf(store, batch_id)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out
