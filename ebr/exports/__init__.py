"""Exports of one batch record: JSON (complete, verifiable offline), CSV (process
samples), PDF (for people) and BatchML (B2MML V0701), plus the JSON Schema.

Imports ``ebr.review``, ``ebr.people`` and ``ebr.record``.
"""

from ebr.exports.batchml import export_batchml
from ebr.exports.csv import export_csv
from ebr.exports.json import export_json
from ebr.exports.pdf import export_pdf
from ebr.exports.schema import ebr_json_schema

__all__ = ["ebr_json_schema", "export_batchml", "export_csv", "export_json", "export_pdf"]
