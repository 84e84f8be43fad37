"""Review by exception and release: declarative rules (``rules/review.toml``), the
checks that turn a record into exceptions, dispositions, QC results and release.

Imports ``ebr.people`` and ``ebr.record``.
"""

from ebr.review.exceptions import review, review_batch, review_connection, review_rows
from ebr.review.model import ReviewException
from ebr.review.release import QaDesk, QaStatus, ReleaseRefused, qa_status
from ebr.review.rules import ReviewRulesError, Rules, load_rules

__all__ = [
    "QaDesk",
    "QaStatus",
    "ReleaseRefused",
    "ReviewException",
    "ReviewRulesError",
    "Rules",
    "load_rules",
    "qa_status",
    "review",
    "review_batch",
    "review_connection",
    "review_rows",
]
