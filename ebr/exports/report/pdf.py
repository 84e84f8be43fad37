"""The human-readable batch record as PDF (fpdf2 + matplotlib, imported only here).

Import this module lazily (`ebr.exports.pdf` does): fpdf2 and matplotlib take a while
to import and the rest of cellbatch must start fast.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ebr.exports.report.analysis import MonitorSpec, Record, as_dict, entry_summary, fmt_value
from ebr.record.kinds import Kind
from ebr.record.model import Sample

SIMULATION_MARK = "SIMULATION — not for GMP use"
NO_SIGNATURES = "No electronic signatures recorded"
MAX_CHART_POINTS = 2000
"""Plotted points per tag at most (min/max per time bucket); excursions always kept."""
MAX_EXCURSION_MARKS = 4000

SECTION_TITLES = (
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

_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_RED = (190, 20, 20)
_GREY = (110, 110, 110)
_ZEBRA = (242, 244, 247)
_HEAD = (225, 230, 238)


class RecordPDF(FPDF):
    """An A4 document with batch header/footer and a simulation mark on every page."""

    def __init__(self, record: Record) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.record = record
        self.sections: list[tuple[str, int]] = []
        self.marked_pages: set[int] = set()
        self.set_margins(12, 18, 12)
        self.set_auto_page_break(True, margin=15)
        self.add_font("dejavu", "", str(_FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("dejavu", "B", str(_FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.add_font("mono", "", str(_FONT_DIR / "DejaVuSansMono.ttf"))
        self.set_font("dejavu", size=9)
        self.set_title(f"Batch record {record.batch.batch_id}")
        self.set_author("cellbatch")
        self.set_creator("cellbatch ebr export_pdf")
        self.set_subject(f"21 CFR Part 11 electronic batch record, {record.batch.batch_id}")

    # -- page furniture ---------------------------------------------------------------

    def header(self) -> None:
        """Batch id left, document name right; the simulation mark when applicable."""
        self.set_y(6)
        self.set_font("dejavu", "B", 8)
        self.set_text_color(0, 0, 0)
        self.cell(60, 5, f"Batch {self.record.batch.batch_id}")
        if self.record.simulation:
            self.set_text_color(*_RED)
            self.cell(self.epw - 120, 5, SIMULATION_MARK, align="C")
            self.marked_pages.add(self.page_no())
        else:
            self.cell(self.epw - 120, 5, "")
        self.set_text_color(*_GREY)
        self.set_font("dejavu", "", 7)
        self.cell(60, 5, "cellbatch electronic batch record", align="R")
        self.set_draw_color(180, 180, 180)
        self.line(self.l_margin, 12, self.w - self.r_margin, 12)
        self.set_text_color(0, 0, 0)
        self.set_y(self.t_margin)

    def footer(self) -> None:
        """Export time and head hash left, `page N of M` right."""
        self.set_y(-11)
        self.set_font("dejavu", "", 7)
        self.set_text_color(*_GREY)
        record = self.record
        left = f"exported {record.exported_at} · head seq {record.batch.head_seq} " + (
            f"hash {record.batch.head_hash[:16]}…"
        )
        self.cell(self.epw - 40, 5, left)
        self.cell(40, 5, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    # -- building blocks --------------------------------------------------------------

    def section(self, title: str, *, new_page: bool = False) -> None:
        """Start a titled section (on a new page, or on this one if there is room)."""
        if new_page or self.get_y() > self.page_break_trigger - 30:
            self.add_page()
        elif self.get_y() > self.t_margin + 1:
            self.ln(4)
        self.sections.append((title, self.page_no()))
        self.set_font("dejavu", "B", 12)
        self.cell(0, 7, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(60, 90, 140)
        self.line(self.l_margin, self.get_y(), self.l_margin + 40, self.get_y())
        self.ln(2)
        self.set_font("dejavu", "", 9)

    def para(
        self, text: str, *, size: float = 8.5, color: tuple[int, int, int] | None = None
    ) -> None:
        """A wrapped paragraph."""
        self.set_font("dejavu", "", size)
        if color:
            self.set_text_color(*color)
        self.multi_cell(0, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(1)

    def key_values(self, pairs: Sequence[tuple[str, str]], *, key_w: float = 48) -> None:
        """A two-column list of labels and wrapped values."""
        for key, value in pairs:
            self.set_font("dejavu", "B", 8.5)
            y = self.get_y()
            if y > self.page_break_trigger - 10:
                self.add_page()
                y = self.get_y()
            self.cell(key_w, 5, key)
            self.set_font("dejavu", "", 8.5)
            self.multi_cell(
                self.epw - key_w, 5, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )

    def fit(self, text: str, width: float) -> str:
        """`text` cut (with …) so that it fits a cell `width` mm wide."""
        room = width - 2 * self.c_margin
        if self.get_string_width(text) <= room:
            return text
        low, high = 0, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            if self.get_string_width(text[:mid] + "…") <= room:
                low = mid
            else:
                high = mid - 1
        return text[:low] + "…"

    def wrap_lines(self, text: str, width: float, max_lines: int) -> list[str]:
        """Greedy word wrap of `text` into at most `max_lines` lines that fit `width` mm."""
        room = width - 2 * self.c_margin
        if self.get_string_width(text) <= room:
            return [text]
        per_char = self.get_string_width("abcdefghij klmnop 0123456789 ABCD") / 33
        chars = max(8, int(room / per_char))
        lines = textwrap.wrap(text, chars, break_long_words=True, break_on_hyphens=False)
        if len(lines) > max_lines:
            lines = [*lines[: max_lines - 1], " ".join(lines[max_lines - 1 :])]
            lines[-1] = self.fit(lines[-1] + "…", width)
        return [self.fit(line, width) for line in lines] or [""]

    def grid(
        self,
        headers: Sequence[str],
        widths: Sequence[float],
        rows: Sequence[Sequence[str]],
        *,
        size: float = 7.5,
        wrap: int | set[int] | None = None,
        max_lines: int = 3,
        flagged: set[int] | None = None,
        mono: set[int] | None = None,
    ) -> None:
        """A table with a repeated header row; the `wrap` column(s) wrap to `max_lines` lines."""
        wrapped = {wrap} if isinstance(wrap, int) else (wrap or set())
        line_h = size * 0.47
        flagged = flagged or set()
        mono = mono or set()
        scale = self.epw / sum(widths)
        widths = [w * scale for w in widths]

        def head() -> None:
            self.set_font("dejavu", "B", size)
            self.set_fill_color(*_HEAD)
            for title, width in zip(headers, widths, strict=True):
                self.cell(width, line_h + 1.2, self.fit(title, width), fill=True)
            self.ln(line_h + 1.2)

        head()
        for index, row in enumerate(rows):
            cells: list[list[str]] = []
            for col, (text, width) in enumerate(zip(row, widths, strict=True)):
                self.set_font("mono" if col in mono else "dejavu", "", size)
                if col in wrapped:
                    cells.append(self.wrap_lines(text, width, max_lines))
                else:
                    cells.append([self.fit(text, width)])
            height = line_h * max(len(c) for c in cells) + 0.8
            if self.get_y() + height > self.page_break_trigger:
                self.add_page()
                head()
            y = self.get_y()
            if index % 2:
                self.set_fill_color(*_ZEBRA)
                self.rect(self.l_margin, y, self.epw, height, style="F")
            if index in flagged:
                self.set_text_color(*_RED)
            x = self.l_margin
            for col, (lines, width) in enumerate(zip(cells, widths, strict=True)):
                self.set_font("mono" if col in mono else "dejavu", "", size)
                for n, line in enumerate(lines):
                    self.set_xy(x, y + 0.4 + n * line_h)
                    self.cell(width, line_h, line)
                x += width
            self.set_text_color(0, 0, 0)
            self.set_xy(self.l_margin, y + height)


def _clock(record: Record, moment: datetime | None) -> str:
    """Process time as `day D.DD (UTC text)`."""
    if moment is None:
        return "—"
    day = record.day(moment)
    stamp = moment.strftime("%d %b %H:%M")
    return f"d {day:.2f} ({stamp})" if day is not None else moment.strftime("%Y-%m-%d %H:%M")


def _day(record: Record, moment: datetime | None) -> str:
    day = record.day(moment)
    return "—" if day is None else f"{day:.2f}"


def build(record: Record) -> RecordPDF:
    """Lay out every section; return the document (not yet output)."""
    pdf = RecordPDF(record)
    _cover(pdf, record)
    _summary(pdf, record)
    _timeline(pdf, record)
    _formula(pdf, record)
    _trends(pdf, record)
    _alarms(pdf, record)
    _writes(pdf, record)
    _exceptions(pdf, record)
    _signatures(pdf, record)
    _audit_trail(pdf, record)
    _manifest(pdf, record)
    return pdf


def _cover(pdf: RecordPDF, record: Record) -> None:
    header = record.batch.header
    created = record.created
    pdf.add_page()
    pdf.sections.append((SECTION_TITLES[0], pdf.page_no()))
    pdf.ln(6)
    pdf.set_font("dejavu", "B", 20)
    pdf.cell(0, 10, SECTION_TITLES[0], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("dejavu", "B", 14)
    pdf.cell(0, 8, header.batch_id, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    if record.simulation:
        pdf.set_draw_color(*_RED)
        pdf.set_text_color(*_RED)
        pdf.set_font("dejavu", "B", 13)
        pdf.cell(0, 11, SIMULATION_MARK, border=1, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
        pdf.ln(3)
    verification = record.verification
    if verification.ok:
        verdict = (
            f"INTACT — {verification.entries_checked} journal entries and "
            f"{verification.blocks_checked} sample blocks verified (hash chain, head, "
            "header, block digests)"
        )
    else:
        verdict = f"TAMPERED — {verification.first_problem}"
    recipe = as_dict(created.get("recipe"))
    plant = as_dict(created.get("plant"))
    software = as_dict(created.get("software"))
    equipment = as_dict(created.get("equipment"))
    units = ", ".join(
        f"{role}: {spec.get('unit', '?')} ({spec.get('class', '')}){_asset_text(spec)}"
        for role, spec in equipment.items()
        if isinstance(spec, dict)
    )
    pairs = [
        ("Batch ID", header.batch_id),
        ("Product", header.product),
        ("Chain of identity (COI)", header.coi),
        ("Recipe", f"{header.recipe_name}, version {header.recipe_version}"),
        ("Recipe status", str(recipe.get("status", "—"))),
        ("Recipe content hash", header.recipe_hash),
        ("Final state", record.final_state),
        ("Disposition", record.qa.disposition if record.qa else "—"),
        ("Mode", "SIMULATION (not GMP)" if record.simulation else "GMP production"),
        (
            "Plant / site",
            " · ".join(str(v) for v in (plant.get("name"), plant.get("site")) if v) or "—",
        ),
        ("Equipment", units or "—"),
        ("Started by", f"{created.get('user', '—')} at terminal {created.get('terminal', '—')}"),
        ("Software", f"{software.get('name', '—')} {software.get('version', '')}".strip()),
        ("Record created (UTC)", record.batch.created_at),
        ("Exported (UTC)", record.exported_at),
        ("Head of chain", f"seq {record.batch.head_seq}, {record.batch.head_hash}"),
        ("Record verification", verdict),
    ]
    pdf.key_values(pairs)
    pdf.ln(4)
    pdf.para(
        "Process times in this report are batch process time (the batch clock); "
        "'d' is days since the batch clock epoch "
        f"({record.epoch.isoformat() if record.epoch else '—'}). Journal times (ts) are "
        "UTC server record time. The complete machine-readable record is the JSON export "
        "(cellbatch ebr export --format json), verifiable offline.",
        size=7.5,
        color=_GREY,
    )


def _summary(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Summary", new_page=True)
    counts = record.counts
    duration = (
        f"{(record.end - record.start).total_seconds() / 86400:.2f} days"
        if record.start and record.end
        else "—"
    )
    alarms = counts.get(Kind.ALARM_RAISED, 0)
    pdf.key_values(
        [
            ("Start (process time)", _clock(record, record.start)),
            ("End (last entry)", _clock(record, record.end)),
            ("Duration", duration),
            ("Final state", record.final_state),
            ("Journal entries", str(len(record.entries))),
            ("State changes", str(counts.get("state changes", 0))),
            (
                "Setpoint writes",
                f"{len(record.writes)} ({sum(w.ok is False for w in record.writes)} failed)",
            ),
            ("Alarms raised", str(alarms)),
            ("Holds", str(counts.get("hold", 0))),
            ("Refused commands", str(counts.get(Kind.COMMAND_REFUSED, 0))),
            (
                "Sample blocks / samples",
                f"{len(record.blocks)} / {sum(len(b.samples) for b in record.blocks)}",
            ),
            (
                "Exceptions (open)",
                "—"
                if record.qa is None
                else f"{len(record.qa.exceptions)} ({len(record.qa.open_exceptions)} open)",
            ),
        ]
    )


def _timeline(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Procedure timeline")
    if not record.timeline:
        pdf.para("No procedural state changes recorded.")
        return
    levels = {"batch": 0, "procedure": 1, "unit_procedure": 2, "operation": 3, "phase": 4}
    rows, flagged = [], set()
    for index, row in enumerate(record.timeline):
        depth = levels.get(row.level, 0)
        name = row.element if depth <= 2 else "   " * (depth - 2) + row.element.rsplit("/", 1)[-1]
        rows.append(
            (
                row.level.replace("unit_procedure", "unit proc.").replace("_", " "),
                name,
                _clock(record, row.start),
                _clock(record, row.end),
                row.state,
                str(row.transitions),
            )
        )
        if row.state not in ("Complete", "Running"):
            flagged.add(index)
    pdf.grid(
        ("level", "element", "start", "end (last transition)", "final state", "transitions"),
        (20, 52, 41, 41, 18, 14),
        rows,
        flagged=flagged,
    )


def _formula(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Formula: master vs actual", new_page=True)
    if not record.parameters:
        pdf.para("No formula parameters recorded in batch.created.")
        return
    changed = {i for i, row in enumerate(record.parameters) if row.changed}
    pdf.para(
        f"{len(record.parameters)} parameters; {len(changed)} changed from the master recipe"
        + (" (flagged in red)." if changed else "."),
        size=8,
    )
    rows = [
        (
            row.name,
            fmt_value(row.master),
            fmt_value(row.actual),
            row.unit,
            "CHANGED" if row.changed else "",
            row.description,
        )
        for row in record.parameters
    ]
    pdf.grid(
        ("parameter", "master", "actual", "unit", "changed", "description"),
        (38, 20, 20, 16, 16, 60),
        rows,
        flagged=changed,
    )


def _downsample(days: Any, values: Any) -> tuple[Any, Any]:
    """Min/max per time bucket so that peaks survive; at most MAX_CHART_POINTS points."""
    n = len(days)
    if n <= MAX_CHART_POINTS:
        return days, values
    buckets = MAX_CHART_POINTS // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)[:-1]
    lows = np.fmin.reduceat(values, edges)
    highs = np.fmax.reduceat(values, edges)
    x = np.repeat(days[edges], 2)
    y = np.empty(2 * buckets)
    y[0::2] = lows
    y[1::2] = highs
    return x, y


def _asset_text(unit: dict[str, Any]) -> str:
    """A bound unit's asset identity and calibration status, as recorded at start, and
    the serial number its instrument reported at bind (R8)."""
    asset = as_dict(unit.get("asset"))
    reported = unit.get("serial_reported")
    said = f", instrument reports serial {reported}" if reported else ""
    if not asset:
        return f" [{said[2:]}]" if said else ""
    return (
        f" [asset {asset.get('asset_id')}, serial {asset.get('serial')}{said}, calibration "
        f"due {asset.get('calibration_due')} ({asset.get('calibration')}), "
        f"{asset.get('qualification')}]"
    )


def _chart(record: Record, spec: MonitorSpec, samples: list[Sample]) -> bytes:
    epoch = np.datetime64(record.epoch.replace(tzinfo=None), "us") if record.epoch else None
    stamps = np.array([s.time[:-1] for s in samples], dtype="datetime64[us]")
    origin = epoch if epoch is not None else stamps[0]
    days = (stamps - origin).astype(np.float64) / 86_400e6
    values = np.array([np.nan if s.value is None else s.value for s in samples], dtype=float)
    fig = Figure(figsize=(7.4, 2.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x, y = _downsample(days, values)
    ax.plot(x, y, lw=0.8, color="#1f4e8c", label=f"{len(samples)} samples")
    limits = (
        (spec.alert_low, "alert", "#e69500", "--"),
        (spec.alert_high, None, "#e69500", "--"),
        (spec.action_low, "action", "#c01414", "-"),
        (spec.action_high, None, "#c01414", "-"),
    )
    labelled: set[str] = set()
    for value, label, color, style in limits:
        if value is None:
            continue
        name = label or ("alert" if color == "#e69500" else "action")
        ax.axhline(
            value,
            color=color,
            ls=style,
            lw=0.9,
            label=f"{name} limit" if name not in labelled else None,
        )
        labelled.add(name)
    # The shared band function (ebr.review.bands), from when the monitor watched: the
    # chart marks exactly the samples review judges (no warm-up before `active_from`).
    band = spec.band
    mask = np.fromiter((band.outside(v) for v in values.tolist()), dtype=bool, count=len(values))
    if spec.since is None:
        mask[:] = False
    else:
        mask &= stamps >= np.datetime64(spec.since[:-1], "us")
    excursions = int(mask.sum())
    if excursions:
        idx = np.flatnonzero(mask)
        if len(idx) > MAX_EXCURSION_MARKS:
            idx = idx[:: len(idx) // MAX_EXCURSION_MARKS + 1]
        ax.scatter(
            days[idx],
            values[idx],
            s=7,
            color="#c01414",
            zorder=3,
            label=f"excursion ({excursions} samples)",
        )
    ax.set_xlabel("process day", fontsize=7)
    ax.set_ylabel(spec.unit, fontsize=7)
    ax.set_title(f"{spec.name} — {spec.tag}", fontsize=8, loc="left")
    ax.tick_params(labelsize=7)
    ax.grid(True, lw=0.3, alpha=0.6)
    ax.legend(
        fontsize=6,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=4,
        frameon=False,
        borderaxespad=0.1,
        handlelength=1.6,
        columnspacing=1.0,
    )
    fig.subplots_adjust(left=0.08, right=0.99, top=0.88, bottom=0.17)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _trends(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Critical process parameter trends", new_page=True)
    if not record.monitors:
        pdf.para("The recipe defines no monitored critical process parameters.")
        return
    pdf.para(
        "One chart per monitored CPP (recipe monitors). Dashed: alert limits; solid: action "
        f"limits; red points: samples outside a limit. Lines show at most {MAX_CHART_POINTS} "
        "points per tag (minimum and maximum of each time bucket); every excursion is marked. "
        "All samples are in the JSON and BatchML exports.",
        size=7.5,
        color=_GREY,
    )
    by_tag = record.samples_by_tag()
    chart_h = pdf.epw * 2.5 / 7.4
    for spec in record.monitors:
        samples = by_tag.get(spec.tag, [])
        if pdf.get_y() + chart_h > pdf.page_break_trigger:
            pdf.add_page()
        if not samples:
            pdf.para(f"{spec.name} ({spec.tag}): no samples recorded.")
            continue
        png = _chart(record, spec, samples)
        pdf.image(io.BytesIO(png), x=pdf.l_margin, w=pdf.epw, h=chart_h)
        pdf.ln(1)


def _alarms(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Alarms")
    if not record.alarms:
        pdf.para("No alarms recorded.")
        return
    rows = []
    for entry in record.alarms:
        data = entry.data
        event = entry.kind.removeprefix("alarm.")
        value = (
            f"alarm {data.get('alarm', '?')} by {data.get('user', '?')}"
            if event == "acknowledged"
            else f"{fmt_value(data.get('value'))} (limit {fmt_value(data.get('limit'))})"
        )
        rows.append(
            (
                str(entry.seq),
                event,
                str(data.get("monitor", "")),
                str(data.get("level", "")),
                value,
                _clock(record, record.process_time(entry)),
                str(data.get("action", "")),
            )
        )
    flagged = {i for i, e in enumerate(record.alarms) if e.kind.endswith("raised")}
    pdf.grid(
        ("seq", "event", "monitor", "level", "value", "recorded at", "action"),
        (10, 20, 26, 12, 40, 34, 14),
        rows,
        flagged=flagged,
    )


def _writes(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Setpoint writes")
    if not record.writes:
        pdf.para("No setpoint writes recorded.")
        return
    rows, flagged = [], set()
    for index, write in enumerate(record.writes):
        if write.ok is True:
            result = f"ok, readback {fmt_value(write.readback)}"
        elif write.ok is False:
            result = f"FAILED: {write.error}"
            flagged.add(index)
        else:
            result = "no result recorded"
            flagged.add(index)
        rows.append(
            (
                str(write.seq),
                _day(record, write.time),
                f"{write.unit} {write.capability}",
                f"{fmt_value(write.old)} → {fmt_value(write.new)} {write.eu}",
                result,
                write.element,
            )
        )
    pdf.grid(
        ("seq", "day", "capability", "old → new", "result", "phase"),
        (9, 10, 34, 30, 36, 60),
        rows,
        flagged=flagged,
        wrap=4,
        max_lines=2,
    )


def _exceptions(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Review by exception")
    if not record.verification.ok:
        pdf.para(
            f"RECORD INTEGRITY: verification failed — {record.verification.first_problem}. "
            "Nothing below can be relied on until this is resolved.",
            color=_RED,
        )
    qa = record.qa
    if qa is None:
        pdf.para(f"Review by exception could not be computed: {record.qa_problem}", color=_RED)
        return
    if not qa.exceptions:
        pdf.para(
            "No exceptions: the review rules found nothing that deviated (excursions, "
            "alarms, holds/stops/aborts/restarts, changed parameters, overrides, manual "
            "entries, communication losses, late steps, signatures, identity, comments, "
            "simulation)."
        )
        return
    pdf.para(
        f"{len(qa.exceptions)} exception(s), {len(qa.open_exceptions)} open. Each links to "
        "its evidence (journal seq, and for excursions the sample window) and needs a "
        "signed disposition before release.",
        size=8,
    )
    rows = []
    for item in qa.exceptions:
        exc = item.exception
        window = exc.evidence.window
        evidence = "#" + ", #".join(str(seq) for seq in exc.evidence.seqs)
        if window is not None:
            evidence += f"; {window.tag} {window.start} … {window.end}"
        if item.open:
            disposition = "OPEN"
        else:
            assert item.signature is not None and item.disposition is not None
            sig = item.signature.data
            deviation = item.disposition.data.get("deviation_id")
            disposition = (
                f"{item.disposition.data.get('comment')}"
                + (f" (deviation {deviation})" if deviation else "")
                + f" — {sig['printed_name']}, {item.signature.entry.ts}"
            )
        rows.append(
            (
                exc.id,
                f"{exc.severity} · {exc.category}",
                f"{exc.title}. {exc.detail} Evidence: {evidence}",
                disposition,
            )
        )
    pdf.grid(("exception", "severity", "finding and evidence", "disposition"),
             (28, 22, 86, 50), rows, wrap={1, 2, 3}, max_lines=8)  # fmt: skip


def _signatures(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Electronic signatures")
    qa = record.qa
    if qa is None or not qa.signatures:
        pdf.para(NO_SIGNATURES + ".")
    else:
        pdf.para(
            "Each signature: printed name, user ID, UTC time, meaning, and what was signed "
            "(bound by the SHA-256 of that content; 'invalid' means the content changed "
            "after signing).",
            size=8,
        )
        rows = [
            (
                f"{sig.data['printed_name']} · {sig.data['username']} ({sig.data['user_id']})",
                sig.entry.ts.replace("T", " "),
                str(sig.data["meaning"]),
                _subject_text(sig.data["subject"]) + (f" — {sig.data['comment']}"
                                                       if sig.data.get("comment") else ""),
                "valid" if sig.valid else f"INVALID: {sig.problem}",
            )
            for sig in qa.signatures
        ]  # fmt: skip
        pdf.grid(("signed by", "time (UTC)", "meaning", "signed", "status"),
                 (40, 34, 18, 60, 34), rows, wrap={0, 1, 3, 4}, max_lines=4)  # fmt: skip
    if qa is not None:
        pdf.ln(2)
        pdf.key_values(
            [
                ("Disposition", qa.disposition),
                ("Failed signature attempts", str(qa.failed_attempts)),
                (
                    "QC results",
                    ", ".join(f"{t}: {r['outcome']}" for t, r in qa.results.items()) or "—",
                ),
            ]
        )


def _subject_text(subject: dict[str, Any]) -> str:
    kind = subject.get("type")
    if kind == "entry":
        return f"journal entry #{subject.get('seq')}"
    if kind == "exception":
        return f"disposition of {subject.get('exception_id')}"
    if kind in ("batch", "decision"):
        what = "release decision" if kind == "decision" else "the record"
        return f"{what} through #{subject.get('through_seq')}"
    if kind == "qc_result":
        return f"QC result {subject.get('test')}"
    return str(kind)


def _audit_trail(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Audit trail", new_page=True)
    pdf.para(
        f"Every journal entry ({len(record.entries)}), in chain order. ts = UTC record time. "
        "The summary is abridged; the full data of each entry is in the JSON export.",
        size=7.5,
        color=_GREY,
    )
    rows = [(str(e.seq), e.ts.replace("T", " "), e.kind, entry_summary(e)) for e in record.entries]
    pdf.grid(("seq", "ts (UTC)", "kind", "data"), (8, 40, 28, 110), rows, size=6.5, wrap=3)


def _manifest(pdf: RecordPDF, record: Record) -> None:
    pdf.section("Hash manifest", new_page=True)
    batch = record.batch
    pdf.key_values(
        [
            ("Head seq", str(batch.head_seq)),
            ("Head hash", batch.head_hash),
            (
                "Hash rule",
                "sha256(prev_hash \\n batch_id \\n seq \\n ts \\n kind \\n data), "
                "see ebr/README.md",
            ),
        ],
        key_w=30,
    )
    pdf.ln(2)
    pdf.para("Journal entries: seq and the first 16 hex digits of each entry hash.", size=8)
    columns = 4
    entries = record.entries
    rows = []
    for start in range(0, len(entries), columns):
        row: list[str] = []
        for entry in entries[start : start + columns]:
            row += [str(entry.seq), entry.hash[:16]]
        row += [""] * (2 * columns - len(row))
        rows.append(row)
    mono = {1, 3, 5, 7}
    pdf.grid(
        ("seq", "hash", "seq", "hash", "seq", "hash", "seq", "hash"),
        (8, 30, 8, 30, 8, 30, 8, 30),
        rows,
        size=6.5,
        mono=mono,
    )
    pdf.section("Sample block digests")
    pdf.sections.pop()  # a sub-heading, not a section of its own
    if not record.blocks:
        pdf.para("No sample blocks recorded.")
        return
    block_rows = [(str(b.block_no), str(len(b.samples)), b.sha256) for b in record.blocks]
    pdf.grid(("block", "samples", "sha256"), (12, 14, 160), block_rows, size=6.5, mono={2})


def render(record: Record) -> tuple[RecordPDF, bytes]:
    """Build the document and return it with its PDF bytes."""
    pdf = build(record)
    return pdf, bytes(pdf.output())
