"""The lot disposition package as files: one JSON and one PDF for the QP.

``write_package(package, out_dir)`` writes ``<COI>.json`` (the package with its
``package_sha256``) and ``<COI>.pdf``: cover with the hash and the findings, then per
batch its summary and verification, exceptions and dispositions, QC results against
specification, identity scans and signatures; the hand-overs (chain of custody); the
linked deviations; and the lot decision when one is given. fpdf2 is imported inside the
function so that importing ``ebr`` stays fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ebr.review.lots import LotDecision, LotPackage

SIMULATION_MARK = "SIMULATION — not for GMP use"


def package_files(coi: str, out_dir: Path) -> tuple[Path, Path]:
    """The JSON and PDF paths of a lot's package in `out_dir`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", coi) or "lot"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.pdf"


def write_package(
    package: LotPackage, out_dir: Path, decision: LotDecision | None = None
) -> tuple[Path, Path]:
    """Write the JSON and PDF of `package` into `out_dir` (created); return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, pdf_path = package_files(package.coi, out_dir)
    document = package.to_dict()
    if decision is not None:
        document = {**document, "decision": decision.to_dict()}
    _atomic(json_path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
    _atomic(pdf_path, render_pdf(package, decision))
    return json_path, pdf_path


def _atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def render_pdf(package: LotPackage, decision: LotDecision | None = None) -> bytes:
    """The package as PDF bytes."""
    from ebr.exports.report.pdf_lot import LotPDF

    content = package.content
    simulation = any(b["simulation"] for b in content["batches"])
    pdf = LotPDF(package.coi, package.sha256, SIMULATION_MARK if simulation else None)
    pdf.add_page()
    pdf.title_block(f"Lot disposition package — {package.coi}", content["product"])
    pdf.kv(
        [
            ("Chain-of-identity ID", package.coi),
            ("Batches", ", ".join(b["batch_id"] for b in content["batches"])),
            ("Package SHA-256", package.sha256),
            ("Review rules digest", str(content["rules_digest"])),
            ("Releasable", "yes" if not content["findings"] else "no"),
        ]
    )
    pdf.heading("Findings blocking release")
    pdf.lines(content["findings"] or ["none"])
    if decision is not None:
        sig = decision.to_dict()["signature"]
        pdf.heading("Lot decision")
        pdf.lines(
            [
                f"{decision.decision} — {_signer(sig)} at {sig['ts']}, meaning {sig['meaning']}"
                + ("" if decision.signature.valid else f" — INVALID: {decision.signature.problem}")
            ]
        )
    for batch in content["batches"]:
        _batch(pdf, batch)
    pdf.heading("Chain of custody: hand-overs between batches")
    pdf.lines(
        [
            f"{h['from_batch']} → {h['to_batch']}: {h['volume_ml']:g} mL, "
            f"{h['viable_cells']:.3g} viable cells in {', '.join(h['containers'])}; label "
            f"scanned {h['scanned']} ({'match' if h['scanned'] == package.coi else 'MISMATCH'}); "
            f"by {_signer(h['signature']) if h.get('signature') else 'unsigned'} at {h['ts']}"
            for h in content["handovers"]
        ]
        or ["none"]
    )
    if content["identity_mismatches"]:
        pdf.lines(
            [f"refused hand-over {m['ts']}: {m['found']}" for m in content["identity_mismatches"]]
        )
    pdf.heading("Deviations linked to the lot")
    dev_rows = [
        (
            d["deviation_id"],
            d["classification"],
            d["status"],
            d["title"],
            str(d.get("root_cause") or "—"),
            ", ".join(f"{c['capa_id']} {c['status']}" for c in d["capas"]) or "—",
        )
        for d in content["deviations"]
    ]
    pdf.grid(("ID", "class", "status", "title", "root cause", "CAPA"), dev_rows)
    return bytes(pdf.output())


def _signer(sig: dict[str, Any]) -> str:
    mark = "" if sig.get("valid", True) else " (INVALID)"
    return f"{sig['printed_name']} ({sig['username']}, {sig['user_id']}){mark}"


def _batch(pdf: Any, batch: dict[str, Any]) -> None:
    recipe = batch["recipe"]
    pdf.heading(f"Batch {batch['batch_id']} — {recipe['name']} {recipe['version']}")
    verification = batch["verification"]
    pdf.kv(
        [
            ("Product", batch["product"]),
            ("Site", str(batch.get("site") or "—")),
            ("Recipe content hash", recipe["content_hash"]),
            ("State / disposition", f"{batch['state']} / {batch['disposition']}"),
            (
                "Verification",
                f"{'intact' if verification['ok'] else 'FAILED'} "
                f"({verification['entries_checked']} entries)",
            ),
            ("QA review", _signer(batch["review"]) if batch["review"] else "not reviewed"),
        ]
    )
    exc_rows = [
        (
            e["id"],
            e["severity"],
            e["title"],
            "open" if e["open"] else f"{e['disposition']} ({e['signed_by']})",
            e["deviation_id"] or "—",
        )
        for e in batch["exceptions"]
    ]
    pdf.subheading("Exceptions and dispositions")
    pdf.grid(("exception", "severity", "title", "disposition", "deviation"), exc_rows)
    qc_rows = [
        (
            q["cqa"],
            q["specification"],
            "—" if q["value"] is None else str(q["value"]),
            str(q["outcome"] or "—"),
            q["status"],
            q["method"],
        )
        for q in batch["qc_results"]
    ]
    pdf.subheading("QC results against specification")
    pdf.grid(("CQA", "specification", "value", "outcome", "status", "method"), qc_rows)
    scans = [
        (
            s["ts"],
            s["kind"],
            str(s.get("element", "")),
            str(s.get("scanned", s.get("expected", ""))),
        )
        for s in batch["identity_scans"]
    ]
    pdf.subheading("Identity scans")
    pdf.grid(("time (UTC)", "kind", "step", "scanned"), scans)
    sig_rows = [
        (_signer(s), s["ts"], s["meaning"], _subject(s["subject"]), str(s.get("comment") or ""))
        for s in batch["signatures"]
    ]
    pdf.subheading("Signatures")
    pdf.grid(("signed by", "time (UTC)", "meaning", "signed", "comment"), sig_rows)


def _subject(subject: Any) -> str:
    if not isinstance(subject, dict):
        return str(subject)
    return " ".join(f"{k}={v}" for k, v in subject.items())
