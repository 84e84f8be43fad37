"""Integrity checks on a batch record, independent of where the record is read from.

The same functions verify the database (`ebr.record.verify.verify_batch`) and an offline JSON
export (`ebr.record.verify.verify_export`), so both apply exactly the rules in ebr/README.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from ebr.record.chain import GENESIS_HASH
from ebr.record.clock import TS_LENGTH
from ebr.record.model import BATCH_CREATED, HEADER_KEY, SAMPLES_BLOCK

JournalRow = tuple[int, str, str, str, str, str]
"""A journal entry as stored: (seq, ts, kind, data canonical JSON, prev_hash, hash)."""

BlockRow = tuple[int, str, str]
"""A sample block as stored: (block_no, data canonical JSON, sha256)."""

HEADER_FIELDS = (
    "batch_id",
    "recipe_name",
    "recipe_version",
    "recipe_hash",
    "product",
    "coi",
    "simulation",
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One integrity finding: the record it concerns and a plain-language message."""

    message: str
    seq: int | None = None
    block_no: int | None = None

    def __str__(self) -> str:
        """Return the message."""
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as a JSON-ready dict."""
        return {"seq": self.seq, "block_no": self.block_no, "message": self.message}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of verifying one batch."""

    batch_id: str
    entries_checked: int
    blocks_checked: int
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the batch record is intact."""
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        """The first finding, or None when intact."""
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        """Return a one-line human summary."""
        counts = f"{self.entries_checked} entries, {self.blocks_checked} sample blocks checked"
        if self.ok:
            return f"{self.batch_id}: intact ({counts})"
        return f"{self.batch_id}: TAMPERED ({counts}): {self.problems[0].message}"

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {
            "batch_id": self.batch_id,
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "blocks_checked": self.blocks_checked,
            "problems": [problem.to_dict() for problem in self.problems],
        }


@dataclass(slots=True)
class ChainReport:
    """What walking a journal found: first problem, tip, and what later checks need."""

    entries: int = 0
    problem: Problem | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    first_ts: str = ""
    created_data: str | None = None
    block_refs: list[tuple[int, str]] = field(default_factory=list)


_CHUNK = 8192
"""Rows checked together on the fast path (bounds memory for very long journals)."""

Columns = tuple[tuple[Any, ...], ...]
"""Journal rows as columns: (seqs, tss, kinds, datas, prev_hashes, hashes)."""


def check_chain(batch_id: str, rows: Iterable[JournalRow]) -> ChainReport:
    """Walk journal rows in stored order; stop at the first problem.

    Checks that seq runs 1, 2, 3… without gaps, that each prev_hash is the previous
    entry's hash, that each hash recomputes from the stored columns, and that ts is a
    well-formed record time later than the previous entry's.
    """
    walker = ChainWalker(batch_id)
    iterator = iter(rows)
    while chunk := list(islice(iterator, _CHUNK)):
        if not walker.feed(tuple(zip(*chunk, strict=True))):
            break
    return walker.finish()


class ChainWalker:
    """`check_chain` fed chunk by chunk, as columns (what a database cursor gives cheaply).

    Each chunk is first tested as a whole with list operations (`_intact`: fast, and
    enough when the record is intact); a chunk that fails is walked entry by entry
    (`_walk`), which finds and names the first problem.
    """

    def __init__(self, batch_id: str) -> None:
        """Start at seq 1 of `batch_id`."""
        self._batch_id = batch_id
        self._report = ChainReport()
        self._expected = 1
        self._prev = GENESIS_HASH
        self._prev_ts = ""

    def feed(self, columns: Columns) -> bool:
        """Check the next entries; False once a problem is found (feed no more then)."""
        if not columns:
            return True
        if self._intact(columns):
            self._note(columns)
            self._expected += len(columns[0])
            self._prev = columns[5][-1]
            self._prev_ts = columns[1][-1]
        else:
            self._walk(zip(*columns, strict=True))
        return self._report.problem is None

    def finish(self) -> ChainReport:
        """The report: first problem (if any), tip, and what later checks need."""
        report = self._report
        report.entries = report.last_seq = self._expected - 1
        report.last_hash = self._prev
        return report

    def _intact(self, columns: Columns) -> bool:
        """Whether every rule of `_walk` holds for all these entries."""
        seqs, tss, kinds, datas, prevs, hashes = columns
        count = len(seqs)
        if seqs != tuple(range(self._expected, self._expected + count)):
            return False
        if prevs[0] != self._prev or prevs[1:] != hashes[:-1]:
            return False
        if not (self._prev_ts < tss[0] and list(tss) == sorted(tss) and len(set(tss)) == count):
            return False
        if set(map(len, tss)) != {TS_LENGTH} or "\n" in "".join(tss) or "\n" in "".join(kinds):
            return False
        sha256 = hashlib.sha256
        batch_id = self._batch_id
        computed = tuple(
            sha256(f"{prev}\n{batch_id}\n{seq}\n{ts}\n{kind}\n{data}".encode()).hexdigest()
            for seq, ts, kind, data, prev in zip(seqs, tss, kinds, datas, prevs, strict=True)
        )
        return computed == hashes

    def _note(self, columns: Columns) -> None:
        """Record what later checks need from intact entries (as `_walk` does per entry)."""
        seqs, tss, kinds, datas = columns[:4]
        index = -1
        with contextlib.suppress(ValueError):
            while True:
                index = kinds.index(SAMPLES_BLOCK, index + 1)
                self._report.block_refs.append((seqs[index], datas[index]))
        if self._expected == 1 and kinds[0] != SAMPLES_BLOCK:
            self._report.first_ts = tss[0]
            self._report.created_data = datas[0] if kinds[0] == BATCH_CREATED else None

    def _walk(self, rows: Iterable[JournalRow]) -> None:
        """Check rows one by one; stop at (and report) the first problem."""
        report = self._report
        sha256 = hashlib.sha256
        batch_id = self._batch_id
        expected, prev, prev_ts = self._expected, self._prev, self._prev_ts
        refs = report.block_refs
        for seq, ts, kind, data, prev_hash, digest in rows:
            if seq != expected:
                report.problem = _sequence_problem(expected, seq)
                break
            if prev_hash != prev:
                report.problem = _link_problem(seq, kind)
                break
            text = f"{prev_hash}\n{batch_id}\n{seq}\n{ts}\n{kind}\n{data}"
            if sha256(text.encode("utf-8")).hexdigest() != digest:
                report.problem = Problem(
                    f"journal entry seq {seq} ({kind}): hash mismatch — entry content was altered",
                    seq=seq,
                )
                break
            if len(ts) != TS_LENGTH or "\n" in ts or "\n" in kind or ts <= prev_ts:
                report.problem = Problem(
                    f"journal entry seq {seq} ({kind}): time {ts!r} is malformed or not after "
                    f"the previous entry's {prev_ts!r}",
                    seq=seq,
                )
                break
            if kind == SAMPLES_BLOCK:
                refs.append((seq, data))
            elif seq == 1:
                report.first_ts = ts
                report.created_data = data if kind == BATCH_CREATED else None
            prev = digest
            prev_ts = ts
            expected += 1
        self._expected, self._prev, self._prev_ts = expected, prev, prev_ts


def _sequence_problem(expected: int, found: int) -> Problem:
    if found > expected:
        how = "an entry was deleted or reordered"
        what = "missing"
    else:
        how = "entries were reordered or duplicated"
        what = "out of order"
    return Problem(
        f"seq {expected}: {what} — expected seq {expected}, found {found} ({how})", seq=expected
    )


def _link_problem(seq: int, kind: str) -> Problem:
    previous = "the genesis value" if seq == 1 else f"the hash of seq {seq - 1}"
    return Problem(
        f"journal entry seq {seq} ({kind}): chain broken — prev_hash does not match {previous} "
        "(an entry was altered, inserted or reordered)",
        seq=seq,
    )


def check_head(report: ChainReport, head_seq: int, head_hash: str) -> Problem | None:
    """Check that an intact chain ends exactly at the batch head (catches cut-off tails)."""
    if report.problem is not None:
        return None
    if report.last_seq == 0:
        return Problem("seq 1: missing — the batch has no journal entries", seq=1)
    if report.last_seq < head_seq:
        return Problem(
            f"head: journal ends at seq {report.last_seq} but the batch head records seq "
            f"{head_seq} (trailing entries deleted)",
            seq=report.last_seq + 1,
        )
    if report.last_seq > head_seq:
        return Problem(
            f"head: journal ends at seq {report.last_seq} but the batch head records seq "
            f"{head_seq} (entries were added outside the journal writer)",
            seq=head_seq + 1,
        )
    if report.last_hash != head_hash:
        return Problem(
            f"head: the hash of the last entry (seq {report.last_seq}) differs from the batch "
            "head (the last entry or the head was altered)",
            seq=report.last_seq,
        )
    return None


def check_header(report: ChainReport, batch: Mapping[str, Any]) -> Problem | None:
    """Check the batch row against the header journaled in its `batch.created` entry."""
    if report.problem is not None or report.last_seq == 0:
        return None
    if report.created_data is None:
        return Problem("journal entry seq 1: the first entry is not batch.created", seq=1)
    try:
        header = json.loads(report.created_data)[HEADER_KEY]
    except (ValueError, KeyError, TypeError):
        return Problem("journal entry seq 1 (batch.created): no batch header", seq=1)
    for name in HEADER_FIELDS:
        if header.get(name) != batch.get(name) or type(header.get(name)) is not type(
            batch.get(name)
        ):
            return Problem(
                f"batch record: {name} {batch.get(name)!r} differs from the value journaled at "
                f"seq 1 ({header.get(name)!r}) — the batch record was altered"
            )
    if batch.get("created_at") != report.first_ts:
        return Problem(
            f"batch record: created_at {batch.get('created_at')!r} differs from the time of "
            f"seq 1 ({report.first_ts!r}) — the batch record was altered"
        )
    return None


def check_blocks(blocks: Iterable[BlockRow], report: ChainReport) -> tuple[int, list[Problem]]:
    """Check each block's digest and its one-to-one link with `samples.block` entries.

    Returns the number of blocks checked and the findings. Cross-references are only
    checked when the chain itself is intact (a broken chain is already the finding).
    """
    problems: list[Problem] = []
    refs: dict[int, list[tuple[int, str]]] = {}
    for seq, data in report.block_refs:
        try:
            ref = json.loads(data)
            block_no, digest = ref["block_no"], ref["sha256"]
        except (ValueError, KeyError, TypeError):
            problems.append(
                Problem(f"journal entry seq {seq} (samples.block): malformed reference", seq=seq)
            )
            continue
        refs.setdefault(block_no, []).append((seq, digest))
    cross_check = report.problem is None
    seen: set[int] = set()
    count = 0
    for block_no, data, stored_digest in blocks:
        count += 1
        digest = hashlib.sha256(data.encode("utf-8")).hexdigest()
        name = f"sample block {block_no}"
        if block_no in seen:
            problems.append(Problem(f"{name}: stored more than once", block_no=block_no))
            continue
        seen.add(block_no)
        if digest != stored_digest:
            problems.append(
                Problem(f"{name}: digest mismatch — block data was altered", block_no=block_no)
            )
            continue
        if not cross_check:
            continue
        linked = refs.get(block_no, [])
        if not linked:
            problems.append(
                Problem(
                    f"{name}: no samples.block journal entry records it (block was inserted "
                    "or renumbered)",
                    block_no=block_no,
                )
            )
        elif len(linked) > 1:
            seqs = ", ".join(str(seq) for seq, _ in linked)
            problems.append(
                Problem(
                    f"{name}: recorded by several journal entries (seq {seqs})", block_no=block_no
                )
            )
        elif linked[0][1] != digest:
            problems.append(
                Problem(
                    f"{name}: digest differs from the one journaled at seq {linked[0][0]} — "
                    "block data was altered",
                    seq=linked[0][0],
                    block_no=block_no,
                )
            )
    if cross_check:
        for block_no, linked in sorted(refs.items(), key=lambda item: item[1][0][0]):
            if block_no not in seen:
                seq = linked[0][0]
                problems.append(
                    Problem(
                        f"journal entry seq {seq} (samples.block): sample block {block_no} is "
                        "missing (block deleted)",
                        seq=seq,
                        block_no=block_no if isinstance(block_no, int) else None,
                    )
                )
    problems.sort(key=_problem_order)
    return count, problems


def _problem_order(problem: Problem) -> tuple[int, int]:
    return (problem.block_no if problem.block_no is not None else 1 << 62, problem.seq or 0)


def assemble(
    batch_id: str,
    report: ChainReport,
    blocks_checked: int,
    *findings: Problem | Sequence[Problem] | None,
) -> VerifyResult:
    """Combine the chain report and further findings into a VerifyResult, in order."""
    problems: list[Problem] = [report.problem] if report.problem else []
    for finding in findings:
        if isinstance(finding, Problem):
            problems.append(finding)
        elif finding:
            problems.extend(finding)
    return VerifyResult(batch_id, report.entries, blocks_checked, tuple(problems))
