"""Export and review times of the 12-day demo batch (goal: PDF ≤ 3 s)."""

from __future__ import annotations

import time

from bench.results import Results
from ebr import Store
from ebr.exports.batchml import batchml_document
from ebr.exports.json import export_json
from ebr.exports.pdf import render_pdf
from ebr.exports.report.analysis import analyse
from ebr.review.release import qa_status


def run(results: Results, db_url: str, batch_id: str) -> None:
    """Time each export of `batch_id` the way `cellbatch ebr export` makes it."""
    with Store.open(db_url, create=False) as store:
        t0 = time.perf_counter()
        render_pdf(analyse(store, batch_id))
        pdf_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        batchml_document(analyse(store, batch_id))
        batchml_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_json(store, batch_id)
        json_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        status = qa_status(store, batch_id)
        review_s = time.perf_counter() - t0
    results.add("PDF export, demo batch (goal ≤ 3 s)", pdf_s, "s")
    results.add("BatchML export, demo batch", batchml_s, "s")
    results.add("JSON export, demo batch", json_s, "s")
    results.add(f"review by exception, demo batch ({len(status.exceptions)} exc.)", review_s, "s")
