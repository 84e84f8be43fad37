"""What ``cellbatch run`` prints besides state changes: why a batch held, alarms,
instrument links lost and regained, instruments that restarted (from the batch's
journal entries as they are made)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ebr import Entry
from ebr.record.kinds import Kind


def _fmt_s(seconds: Any) -> str:
    value = float(seconds or 0.0)
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def describe(entry: Entry) -> str | None:
    """One console line for an entry worth telling the operator, else None."""
    data = entry.data
    t = str(data.get("t", ""))[:19]
    if entry.kind == Kind.INSTRUMENT_LOST:
        last = ", ".join(f"{k} = {v}" for k, v in (data.get("last_good") or {}).items())
        return f"{t} instrument {data.get('unit')} link lost since {data.get('since')}" + (
            f" (last good: {last})" if last else ""
        )
    if entry.kind == Kind.INSTRUMENT_RESTORED:
        down = _fmt_s(data.get("down_process_s"))
        return f"{t} instrument {data.get('unit')} link regained after {down}"
    if entry.kind == Kind.INSTRUMENT_RESTARTED:
        then = "re-asserting its setpoints" if data.get("policy") == "reassert" else "holding"
        why = f" ({data['reason']})" if data.get("reason") else ""
        return f"{t} instrument {data.get('unit')} restarted{why}: {then}"
    if entry.kind == Kind.COMMAND_ACCEPTED and data.get("command") in ("hold", "abort", "stop"):
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"{t} {data['command']} by {data.get('user')}{reason}"
    if entry.kind == Kind.ALARM_RAISED:
        return (
            f"{t} {data.get('level')} alarm {data.get('monitor')}: {data.get('tag')} = "
            f"{data.get('value')} beyond {data.get('limit')} (since {data.get('at')})"
        )
    if entry.kind == Kind.PHASE_FAILED:
        return f"{t} phase {data.get('element')} failed: {data.get('error')}"
    return None


def echo_events(err: bool = False) -> Callable[[Entry], None]:
    """A recorder listener printing :func:`describe` lines."""

    def listener(entry: Entry) -> None:
        line = describe(entry)
        if line is not None:
            click.echo(line, err=err)

    return listener
