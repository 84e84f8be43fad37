"""PDF export: sections, page furniture, the simulation mark, and the CLI.

Also home of `make_batch`, the synthetic batch the BatchML and schema tests share.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cellbatch.ebr_cli import ebr
from ebr import Store, read_journal
from ebr.exports.pdf import build_pdf, export_pdf
from tests.ebr.records import GMP, SIM

SECTIONS = (
    "Electronic Batch Record",
    "Summary",
    "Procedure timeline",
    "Formula: master vs actual",
    "Critical process parameter trends",
    "Alarms",
    "Setpoint writes",
    "Review by exception",
    "Electronic signatures",
    "Audit trail",
    "Hash manifest",
)


def _pdftotext(data: bytes, tmp_path: Path) -> list[str] | None:
    """Text of each page via poppler's pdftotext, or None when it is not installed."""
    tool = shutil.which("pdftotext")
    if tool is None:
        return None
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(data)
    text = subprocess.run(
        [tool, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = text.split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def test_synthetic_batch_has_every_kind(record_db: tuple[Store, Path]) -> None:
    store, _ = record_db
    kinds = {entry.kind for entry in read_journal(store, SIM)}
    assert len(read_journal(store, SIM)) > 190
    assert {
        "batch.created",
        "batch.state",
        "element.state",
        "write.intent",
        "write.result",
        "method.intent",
        "method.result",
        "command.accepted",
        "command.refused",
        "phase.progress",
        "phase.failed",
        "alarm.raised",
        "alarm.cleared",
        "alarm.acknowledged",
        "monitors.active",
        "condition.met",
        "condition.timeout",
        "samples.block",
    } <= kinds


@pytest.mark.slow
def test_simulation_pdf_sections_and_marks(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = record_db
    doc, data = build_pdf(store, SIM)
    assert data.startswith(b"%PDF-")
    pages = doc.pages_count
    assert pages >= 8
    titles = [title for title, _page in doc.sections]
    assert titles == list(SECTIONS)
    assert doc.marked_pages == set(range(1, pages + 1))
    text = _pdftotext(data, tmp_path)
    if text is None:
        return  # the fpdf2 object checks above are all we can do without poppler
    assert len(text) == pages
    whole = "\n".join(text)
    for title in SECTIONS:
        assert title in whole, title
    assert f"page 1 of {pages}" in text[0]
    for n, page in enumerate(text, 1):
        assert "SIMULATION — not for GMP use" in page, f"page {n} lacks the simulation mark"
        assert f"page {n} of {pages}" in page
    assert "No electronic signatures recorded" in whole
    assert "BadTypeMismatch" in whole  # the failed write, in writes and exceptions
    assert "CHANGED" in whole  # feed_volume changed from master
    assert "refused command" in " ".join(whole.split())  # the exception's category
    assert "COI-2026-000123" in text[0] and "INTACT" in text[0]


@pytest.mark.slow
def test_gmp_pdf_has_no_simulation_mark(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = record_db
    doc, data = build_pdf(store, GMP)
    assert doc.marked_pages == set()
    text = _pdftotext(data, tmp_path)
    if text is not None:
        assert not any("SIMULATION" in page for page in text)
        assert "GMP production" in text[0]


def test_export_pdf_writes_file(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = record_db
    out = export_pdf(store, SIM, tmp_path / "sim.pdf")
    assert out.read_bytes().startswith(b"%PDF-")
    assert not (tmp_path / "sim.pdf.partial").exists()


@pytest.mark.slow
def test_cli_export_pdf(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    _, path = record_db
    out = tmp_path / "b.pdf"
    result = CliRunner().invoke(
        ebr, ["export", GMP, "--format", "pdf", "--out", str(out), "--db", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")


def test_cli_pdf_needs_out(record_db: tuple[Store, Path]) -> None:
    _, path = record_db
    result = CliRunner().invoke(ebr, ["export", GMP, "--format", "pdf", "--db", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and "--out" in result.stderr
    assert result.stdout == ""


def test_tampered_minimal_batch_is_reported(
    populated: tuple[Store, Any, str, int], shell: Any, tmp_path: Path
) -> None:
    """A batch without recipe content still renders; a tampered one says so on the cover."""
    store, _location, batch_id, _last = populated
    shell("UPDATE journal SET kind = 'x.y' WHERE batch_id = ? AND seq = 13", batch_id)
    doc, data = build_pdf(store, batch_id)
    assert not doc.record.verification.ok
    assert doc.record.findings[0].category == "record integrity"
    assert [title for title, _ in doc.sections] == list(SECTIONS)
    text = _pdftotext(data, tmp_path)
    if text is not None:
        assert "TAMPERED" in text[0]
        assert "journal entry seq 13 (x.y): hash mismatch" in "\n".join(text)
        assert "The recipe defines no monitored critical process parameters" in "\n".join(text)


def test_unicode_renders_with_embedded_font(record_db: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = record_db
    _doc, data = build_pdf(store, GMP)
    text = _pdftotext(data, tmp_path)
    if text is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    assert "µL-free, ×10⁶ ok" in "\n".join(text)
    assert b"DejaVuSans" in data
