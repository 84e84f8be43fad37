"""Review by exception: the deviations of one batch record, each with its evidence.

A pure, read-only function of a stored record — the same record and rules always
give the same exceptions with the same IDs. It does not verify the hash chain: run
``verify_batch`` first (a tampered record must not be reviewed as if it were sound).

- ``load_rules(path=None) -> Rules`` — the packaged defaults ``ebr/review/rules/review.toml``
  with a site file layered over them (``path``, else ``$CELLBATCH_REVIEW_RULES``).
  A bad file raises ``ReviewRulesError`` (an ``EbrError``) worded
  ``FILE: rule X: message``. ``Rules.digest`` names the effective settings.
- ``review(store, batch_id, rules=None) -> list[ReviewException]`` — read from one
  snapshot of the store (rules default to ``load_rules()``); quiet sample blocks are
  settled from their stored text without decoding them. ``review_connection(conn,
  batch, entries, rules=None)`` does the same inside a snapshot the caller holds.
- ``review_batch(batch, entries, samples, rules)`` — the same from what ``ebr.record.query``
  gives: ``read_batch``, ``read_journal``, ``read_samples``. ``review_rows`` takes the
  sample blocks as row lists or stored texts instead. These two lack the store, so they
  skip rule ``out_of_trend`` (it compares the batch with earlier ones: ``trend_rule.py``).

A ``ReviewException`` has ``id``, ``rule``, ``category``, ``severity`` (critical, major,
minor), ``title`` (one line), ``detail``, ``evidence`` (``seqs``: journal entries, the
first one the anchor; ``window``: for excursions and bad-quality runs the sample
window — tag, start, end, returned, duration, samples, peak, limit; ``facts``),
``time`` (process time), ``element``, ``line()`` and ``to_dict()``. The list is ordered
by anchor seq, then rule (``SETTINGS`` order), then key.

Exception IDs are ``<rule>-<seq>``, seq being the anchor entry (the alarm, the hold,
the answer, the ``samples.block`` entry holding an excursion's first sample), with
``.<key>`` where one entry yields several (``parameter-1.feed_volume``;
``excursion-57.312`` = row 312 of that block). IDs are made from the anchor alone, so
appending entries (dispositions, signatures, QC results) never renames an exception.
Appending can add one (a failed ``performed``/``verified`` signature) or resolve one (a
``verified`` e-signature on an entry whose verification was missing removes
``signature-<seq>``); all others keep their IDs. A disposition refers to an exception
by its ID (and is best recorded with the ``Rules.digest`` it was reviewed under).

Verification (R14): in a GMP batch, an entry whose prompt requires verification counts
as verified only with a ``signature`` entry of meaning ``verified`` whose
``subject.seq`` is the answer's seq (as the prompt board signs answers); a verifier's
name alone is flagged as a missing signature (``verification_needs_signature``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from ebr.record.errors import StoreError
from ebr.record.model import BatchRecord, Entry, Sample
from ebr.record.query import batch_record, journal_entries
from ebr.record.schema import sample_blocks
from ebr.record.store import Store
from ebr.review.checks import JOURNAL_RULES
from ebr.review.depth import cross_check
from ebr.review.model import Evidence, Finding, ReviewException, SampleWindow
from ebr.review.process import bad_quality, excursions
from ebr.review.rules import (
    RULES_ENV,
    SETTINGS,
    SEVERITIES,
    ReviewRulesError,
    RuleConfig,
    Rules,
    load_rules,
)
from ebr.review.samples import Block, BlockIndex, UnreadableBlock, scan
from ebr.review.trend_rule import out_of_trend
from ebr.review.view import BatchView

__all__ = [
    "RULES_ENV",
    "SEVERITIES",
    "Evidence",
    "ReviewException",
    "ReviewRulesError",
    "RuleConfig",
    "Rules",
    "SampleWindow",
    "load_rules",
    "review",
    "review_batch",
    "review_connection",
    "review_rows",
]

_ORDER = {name: i for i, name in enumerate(SETTINGS)}


def review_batch(
    batch: BatchRecord, entries: Sequence[Entry], samples: Sequence[Sample], rules: Rules
) -> list[ReviewException]:
    """The exceptions of one batch record under `rules` (see the module docstring)."""
    rows = [(s.tag, s.time, s.value, s.unit, s.quality) for s in samples]
    return review_rows(batch, entries, [rows], rules)


def review(store: Store, batch_id: str, rules: Rules | None = None) -> list[ReviewException]:
    """Review `batch_id` as stored (one snapshot); UnknownBatchError if there is none,
    StoreError if a sample block is unreadable (run verify)."""
    with store.snapshot() as conn:
        batch = batch_record(conn, batch_id)
        return review_connection(conn, batch, journal_entries(conn, batch_id), rules)


def review_connection(
    conn: Connection, batch: BatchRecord, entries: Sequence[Entry], rules: Rules | None = None
) -> list[ReviewException]:
    """Review a batch whose row and journal were read on `conn` (an open snapshot): its
    sample blocks are read on the same connection, so all of it is one consistent view."""
    rules = rules if rules is not None else load_rules()
    texts = list(
        conn.execute(
            select(sample_blocks.c.data)
            .where(sample_blocks.c.batch_id == batch.batch_id)
            .order_by(sample_blocks.c.block_no, sample_blocks.c.id)
        ).scalars()
    )
    trend = rules.rule("out_of_trend")  # reads earlier batches: only where the store is
    found = (
        [("out_of_trend", f) for f in out_of_trend(conn, batch, entries, trend)]
        if trend.enabled
        else []
    )
    try:
        return review_rows(batch, entries, texts, rules, found)
    except UnreadableBlock as exc:
        raise StoreError(
            f"sample block {exc.number} of batch {batch.batch_id} is unreadable; run verify"
        ) from None


def review_rows(
    batch: BatchRecord,
    entries: Sequence[Entry],
    blocks: Sequence[Block],
    rules: Rules,
    store_findings: Sequence[tuple[str, Finding]] = (),
) -> list[ReviewException]:
    """`review_batch` over sample blocks in recorded order, each its rows
    ([tag, time, value, unit, quality] lists) or its stored text; `store_findings` are
    those of rules that read other batches (``out_of_trend``, see review_connection)."""
    view = BatchView(batch, entries)
    found: list[tuple[str, Finding]] = list(store_findings)
    for name, check in JOURNAL_RULES.items():
        rule = rules.rule(name)
        if rule.enabled:
            found += [(name, f) for f in check(view, rule)]
    cross = rules.rule("cross_check")
    if cross.enabled and any(blocks):
        found += [("cross_check", f) for f in cross_check(view, cross, blocks)]
    out_rule, comm_rule = rules.rule("excursion"), rules.rule("comm_loss")
    if (out_rule.enabled or comm_rule.enabled) and any(blocks):
        out_runs, bad_runs = scan(
            view, blocks, excursions=out_rule.enabled, bad_quality=comm_rule.enabled
        )
        index = BlockIndex(view)
        found += [("excursion", f) for f in excursions(view, out_rule, out_runs, index)]
        found += [("comm_loss", f) for f in bad_quality(view, comm_rule, bad_runs, index)]
    found.sort(key=lambda item: (item[1].anchor, _ORDER[item[0]], _key(item[1].key)))
    return _named(found, rules)


def _key(key: str | None) -> tuple[int, int, str]:
    """Numeric keys (sample rows) in number order, then names."""
    if key is None:
        return (0, 0, "")
    return (1, int(key), "") if key.isdigit() else (2, 0, key)


def _named(found: list[tuple[str, Finding]], rules: Rules) -> list[ReviewException]:
    result = []
    seen: dict[str, int] = {}
    for name, f in found:
        rule = rules.rule(name)
        ident = f"{name}-{f.anchor}" + (f".{f.key}" if f.key else "")
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] > 1:  # a rule found two things at one entry without a key
            ident = f"{ident}.{seen[ident]}"
        others = sorted(set(f.evidence.seqs) - {f.anchor})
        evidence = Evidence((f.anchor, *others), f.evidence.window, f.evidence.facts)
        result.append(
            ReviewException(
                id=ident,
                rule=name,
                category=rule.category,
                severity=f.severity,
                title=f.title,
                detail=f.detail,
                evidence=evidence,
                time=f.time,
                element=f.element,
            )
        )
    return result
