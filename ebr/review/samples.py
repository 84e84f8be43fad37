"""One pass over a batch's samples: CPP excursions beyond monitor limits and runs of
samples without a good value, each located in its sample block."""

from __future__ import annotations

import functools
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import compress
from operator import itemgetter
from typing import Any

from ebr.record.model import SAMPLES_BLOCK
from ebr.review.bands import Band
from ebr.review.view import BatchView, MonitorLimits, number, seconds_between

GOOD = "good"


@dataclass(frozen=True, slots=True)
class SampleRun:
    """Consecutive samples of one tag that share a condition (out of band, or bad).

    `first`/`last` are the indexes of its first and last sample in the batch's samples;
    `returned` the time of the first sample after the run that was back to normal
    (None: never). `parts` > 1 when several runs were merged into one episode.
    """

    tag: str
    first: int
    last: int
    start: str
    end: str
    returned: str | None
    count: int
    unit: str
    # excursions only:
    monitor: MonitorLimits | None = None
    side: str = ""  # "high" | "low"
    peak: float | None = None
    limit: float | None = None
    action: bool = False
    qualities: tuple[str, ...] = ()
    parts: int = 1

    @property
    def excess(self) -> float:
        """How far the peak lies beyond the limit (excursions)."""
        if self.peak is None or self.limit is None:
            return 0.0
        return abs(self.peak - self.limit)


def merge_runs(runs: list[SampleRun], gap_s: float) -> list[SampleRun]:
    """Runs of one tag on one side that follow each other within `gap_s` (from the
    first run's return to the next one's start) merged into episodes, in order."""
    merged: list[SampleRun] = []
    latest: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (run.tag, run.side)
        at = latest.get(key)
        prev = merged[at] if at is not None else None
        gap = seconds_between(prev.returned, run.start) if prev is not None else None
        if prev is None or at is None or gap is None or gap > gap_s:
            latest[key] = len(merged)
            merged.append(run)
            continue
        peak = run.peak if run.excess > prev.excess else prev.peak
        merged[at] = replace(
            prev,
            last=run.last,
            end=run.end,
            returned=run.returned,
            count=prev.count + run.count,
            peak=peak,
            action=prev.action or run.action,
            parts=prev.parts + run.parts,
        )
    return merged


class BlockIndex:
    """Maps a sample's index in the flattened samples to its `samples.block` entry."""

    def __init__(self, view: BatchView) -> None:
        self.ends: list[int] = []
        self.seqs: list[int] = []
        total = 0
        for entry in view.kind(SAMPLES_BLOCK):
            total += int(number(entry.data.get("count")) or 0)
            self.ends.append(total)
            self.seqs.append(entry.seq)

    def counts(self) -> list[int]:
        """The number of samples in each block, in block order."""
        return [end - start for start, end in zip([0, *self.ends], self.ends, strict=False)]

    def locate(self, index: int) -> tuple[int, int]:
        """(seq of the block entry, 1-based row in that block) of sample `index`."""
        pos = bisect_right(self.ends, index)
        if pos >= len(self.ends):  # counts disagree with the samples: anchor on the last
            return (self.seqs[-1] if self.seqs else 0), index + 1
        start = self.ends[pos - 1] if pos else 0
        return self.seqs[pos], index - start + 1

    def seqs_between(self, first: int, last: int) -> list[int]:
        """Seqs of the block entries holding samples `first`..`last`."""
        a = min(bisect_right(self.ends, first), len(self.seqs) - 1)
        b = min(bisect_right(self.ends, last), len(self.seqs) - 1)
        return self.seqs[a : b + 1] if self.seqs else []


@dataclass
class _Open:
    first: int
    last: int
    start: str
    end: str
    count: int
    unit: str
    side: str = ""
    peak: float | None = None
    limit: float | None = None
    action: bool = False
    qualities: set[str] | None = None


def _limits(m: MonitorLimits, value: float) -> tuple[str, float, bool] | None:
    """(side, limit crossed, beyond action) when `value` is outside the monitor's band
    (the shared band function, ebr.review.bands)."""
    return _band(m).breach(value)


@functools.lru_cache(maxsize=256)
def _band(m: MonitorLimits) -> Band:
    return Band(m.alert_low, m.alert_high, m.action_low, m.action_high)


Row = Sequence[Any]
"""One sample as stored in a block: [tag, time, value, unit, quality]."""

Block = Sequence[Row] | str
"""A block's rows, or its stored text (canonical JSON `{"rows": [...]}`)."""

_GOOD_END = ',"good"]'
_NULL = ",null,"


class UnreadableBlock(ValueError):
    """A stored sample block is not the JSON it should be; `number` is its position (1-based)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"sample block {number} is unreadable")
        self.number = number


def scan(
    view: BatchView, blocks: Iterable[Block], *, excursions: bool, bad_quality: bool
) -> tuple[list[SampleRun], list[SampleRun]]:
    """(excursions, bad-quality runs) of the batch's sample blocks (in recorded order),
    in order of their first sample. Excursions count only from the moment the tag's
    monitor became active. Stored texts are decoded only when a quick look at the text
    cannot settle the block (see `_Scanner.text_block`)."""
    scanner = _Scanner(view, excursions=excursions, bad_quality=bad_quality)
    counts = BlockIndex(view).counts()
    offset = 0
    for position, block in enumerate(blocks, 1):
        if isinstance(block, str):
            count = counts[position - 1] if position <= len(counts) else None
            if count is not None and scanner.text_block(block, count):
                offset += count
                continue
            block = _decode(block, position)
        if block:
            scanner.block(block, offset)
        offset += len(block)
    return scanner.finish()


def _decode(text: str, number: int) -> list[Row]:
    try:
        rows = json.loads(text)["rows"]
    except (ValueError, KeyError, TypeError):
        raise UnreadableBlock(number) from None
    if not isinstance(rows, list):
        raise UnreadableBlock(number)
    return rows


class _Scanner:
    """Per-tag runs across blocks. A block whose rows are all good and, per monitored
    tag, all inside the band is settled with C-level column operations; only blocks
    with something to find are walked row by row."""

    def __init__(self, view: BatchView, *, excursions: bool, bad_quality: bool) -> None:
        active = [m for m in view.monitors if m.name in view.monitor_since] if excursions else []
        self.monitors = {m.tag: m for m in active}
        self.since = {m.tag: view.monitor_since[m.name] for m in active}
        self.bad_quality = bad_quality
        self.out_runs: list[SampleRun] = []
        self.bad_runs: list[SampleRun] = []
        self.open_out: dict[str, _Open] = {}
        self.open_bad: dict[str, _Open] = {}
        self._patterns: dict[str, tuple[str, re.Pattern[str]]] = {}

    def block(self, rows: Sequence[Row], offset: int) -> None:
        # (a short row makes zip yield fewer than five columns: ValueError)
        tags, times, values, _units, qualities = zip(*rows)  # noqa: B905
        present = set(tags)
        all_good = None not in values and qualities.count(GOOD) == len(qualities)
        if self.bad_quality:
            if not all_good:
                for i, row in enumerate(rows):
                    self.quality(row, offset + i)
            else:
                for tag in [t for t in self.open_bad if t in present]:
                    self.bad_runs.append(
                        _close(tag, self.open_bad.pop(tag), times[tags.index(tag)])
                    )
        n = len(tags)
        for tag, monitor in self.monitors.items():
            if tag not in present:
                continue
            chosen = list(map(tag.__eq__, tags))
            since = self.since[tag]
            start = 0
            if times[0] < since:  # the monitor started watching in or after this block
                at = list(compress(times, chosen))
                start = bisect_left(at, since)  # a tag's samples are recorded in time order
                if start == len(at):
                    continue
            if all_good:
                column = list(compress(values, chosen))[start:]
                if _inside(monitor, min(column), max(column)):
                    if tag in self.open_out:
                        run = self.open_out.pop(tag)
                        first = (
                            tags.index(tag)
                            if start == 0
                            else list(compress(range(n), chosen))[start]
                        )
                        self.out_runs.append(_close(tag, run, times[first], monitor))
                    continue
            for i in list(compress(range(n), chosen))[start:]:
                self.excursion(monitor, rows[i], offset + i, since)

    def text_block(self, text: str, count: int) -> bool:
        """Settle a quiet block from its stored text, without decoding it: True when all
        `count` rows are good and every monitored tag stays inside its band (open runs
        are closed at the tag's first sample); False when the block must be decoded."""
        if text.count(_GOOD_END) != count or _NULL in text:
            return False
        closes: list[tuple[str, str, MonitorLimits | None]] = []
        for tag, monitor in self.monitors.items():
            found = self._matches(tag, text)
            if found is None:
                return False
            since = self.since[tag]
            if not found or found[-1][0] < since:
                continue  # not in this block, or not watched yet
            if found[0][0] < since:  # the monitor started in this block
                found = found[bisect_left(list(map(itemgetter(0), found)), since) :]
            try:
                values = list(map(float, map(itemgetter(1), found)))
            except ValueError:
                return False
            if not _inside(monitor, min(values), max(values)):
                return False
            if tag in self.open_out:
                closes.append((tag, found[0][0], monitor))
        if self.bad_quality:
            for tag in self.open_bad:
                found = self._matches(tag, text)
                if found is None:
                    return False
                if found:
                    closes.append((tag, found[0][0], None))
        for tag, time, limits in closes:
            if limits is None:
                self.bad_runs.append(_close(tag, self.open_bad.pop(tag), time))
            else:
                self.out_runs.append(_close(tag, self.open_out.pop(tag), time, limits))
        return True

    def _matches(self, tag: str, text: str) -> list[tuple[str, str]] | None:
        """(time, value) text of every row of `tag` in a block's text; None when that
        cannot be told for sure from the text."""
        pattern = self._patterns.get(tag)
        if pattern is None:
            quoted = json.dumps(tag, ensure_ascii=False)
            if "\\" in quoted:
                return None  # escaped characters: leave it to the JSON decoder
            prefix = f"[{quoted},"
            regex = re.compile(re.escape(prefix) + r'"([^"]*)",([^,]*),')
            pattern = self._patterns[tag] = (prefix, regex)
        prefix, regex = pattern
        found: list[tuple[str, str]] = regex.findall(text)
        return found if len(found) == text.count(prefix) else None

    def quality(self, row: Row, index: int) -> None:
        tag, time, value, unit, quality = row
        run = self.open_bad.get(tag)
        if value is not None and quality == GOOD:
            if run is not None:
                self.bad_runs.append(_close(tag, self.open_bad.pop(tag), time))
            return
        if run is None:
            run = self.open_bad[tag] = _Open(index, index, time, time, 0, unit, qualities=set())
        run.end, run.count, run.last = time, run.count + 1, index
        assert run.qualities is not None
        run.qualities.add(quality if value is not None else "no value")

    def excursion(self, monitor: MonitorLimits, row: Row, index: int, since: str) -> None:
        tag, time, value, unit, quality = row
        if value is None or quality != GOOD or time < since:
            return
        hit = _limits(monitor, value)
        run = self.open_out.get(tag)
        if run is not None and (hit is None or hit[0] != run.side):
            self.out_runs.append(_close(tag, self.open_out.pop(tag), time, monitor))
            run = None
        if hit is None:
            return
        side, limit, action = hit
        if run is None:
            self.open_out[tag] = _Open(
                index, index, time, time, 1, unit, side, value, limit, action
            )
            return
        run.end, run.count, run.last = time, run.count + 1, index
        run.action = run.action or action
        if run.peak is None or abs(value - limit) > abs(run.peak - limit):
            run.peak = value

    def finish(self) -> tuple[list[SampleRun], list[SampleRun]]:
        for tag, run in self.open_out.items():
            self.out_runs.append(_close(tag, run, None, self.monitors[tag]))
        for tag, run in self.open_bad.items():
            self.bad_runs.append(_close(tag, run, None))
        self.open_out, self.open_bad = {}, {}
        return (
            sorted(self.out_runs, key=lambda r: r.first),
            sorted(self.bad_runs, key=lambda r: r.first),
        )


def _inside(m: MonitorLimits, low: float, high: float) -> bool:
    """Whether values from `low` to `high` all lie inside the monitor's band."""
    top = m.alert_high if m.alert_high is not None else m.action_high
    bottom = m.alert_low if m.alert_low is not None else m.action_low
    return (top is None or high <= top) and (bottom is None or low >= bottom)


def _close(
    tag: str, run: _Open, returned: str | None, monitor: MonitorLimits | None = None
) -> SampleRun:
    return SampleRun(
        tag=tag,
        first=run.first,
        last=run.last,
        start=run.start,
        end=run.end,
        returned=returned,
        count=run.count,
        unit=run.unit,
        monitor=monitor,
        side=run.side,
        peak=run.peak,
        limit=run.limit,
        action=run.action,
        qualities=tuple(sorted(run.qualities or ())),
    )
