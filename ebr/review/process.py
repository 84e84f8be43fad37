"""Review rules about the process: CPP excursions and bad-quality sample runs, alarms,
holds/stops/aborts and controller interruptions, lost instruments, late or overrunning
steps, failed actions. Each is a pure function of the batch view and its settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ebr.record.kinds import Kind
from ebr.record.model import CLOCK_STEPPED_BACK, Entry
from ebr.review.model import Evidence, Finding, SampleWindow
from ebr.review.rules import RuleConfig
from ebr.review.samples import BlockIndex, SampleRun, merge_runs
from ebr.review.view import BatchView, fmt, fmt_s, number, seconds_between

FINAL = frozenset({"Complete", "Stopped", "Aborted"})
RUNNING = "Running"


def _window(run: SampleRun, limit_name: str | None = None) -> SampleWindow:
    duration = seconds_between(run.start, run.returned or run.end) or 0.0
    return SampleWindow(
        tag=run.tag,
        start=run.start,
        end=run.end,
        returned=run.returned,
        duration_s=duration,
        samples=run.count,
        unit=run.unit,
        peak=run.peak,
        limit=run.limit,
        limit_name=limit_name,
    )


def excursions(
    view: BatchView, rule: RuleConfig, runs: list[SampleRun], blocks: BlockIndex
) -> list[Finding]:
    """CPP excursions: how far beyond which limit, for how long."""
    found = []
    alarms = view.kind(Kind.ALARM_RAISED)
    for run in merge_runs(runs, rule["merge_gap_s"]):
        monitor = run.monitor
        assert monitor is not None
        window = _window(run, f"alert {run.side}")
        if monitor.alert_low is None and monitor.alert_high is None:
            window = _window(run, f"action {run.side}")
        listed = run.action and rule["action_always"]
        if not listed and (
            window.duration_s < rule["min_duration_s"] or run.excess < rule["min_excess"]
        ):
            continue
        seq, row = blocks.locate(run.first)
        until = window.returned or window.end
        raised = [
            a.seq
            for a in alarms
            if a.data.get("monitor") == monitor.name
            and run.start <= str(a.data.get("at") or view.time(a)) <= until
        ]
        beyond = "action" if run.action else "alert"
        action_limit = monitor.action_high if run.side == "high" else monitor.action_low
        unit = f" {monitor.unit}" if monitor.unit else ""
        back = f"back in band at {window.returned}" if window.returned else "not back in band"
        found.append(
            Finding(
                anchor=seq,
                key=str(row),
                severity=rule["action_severity"] if run.action else rule.severity,
                title=(
                    f"{monitor.name} beyond its {beyond} limit for {fmt_s(window.duration_s)}: "
                    f"peak {fmt(run.peak)}{unit}, {window.limit_name} limit {fmt(run.limit)}{unit}"
                    + (f", action limit {fmt(action_limit)}{unit}" if run.action else "")
                ),
                detail=(
                    f"{run.tag}: {run.count} sample(s) out of band"
                    + (f" in {run.parts} excursions" if run.parts > 1 else "")
                    + f" from {run.start} to {run.end} ({back}); peak {fmt(run.peak)}{unit} is "
                    f"{fmt(run.excess)}{unit} beyond the {window.limit_name} limit "
                    f"{fmt(run.limit)}{unit}"
                    + (
                        f" (action limit {fmt(action_limit)}{unit})"
                        if action_limit is not None
                        else ""
                    )
                    + (
                        f"; alarm(s) at seq {', '.join(map(str, raised[:5]))}"
                        + (f" and {len(raised) - 5} more" if len(raised) > 5 else "")
                        if raised
                        else "; no alarm raised"
                    )
                ),
                evidence=Evidence(
                    (seq, *blocks.seqs_between(run.first, run.last), *raised),
                    window,
                    {"monitor": monitor.name, "action": run.action, "row": row, "parts": run.parts},
                ),
                time=run.start,
            )
        )
    return found


def bad_quality(
    view: BatchView, rule: RuleConfig, runs: list[SampleRun], blocks: BlockIndex
) -> list[Finding]:
    """Runs of samples without a good value (part of the comm_loss rule)."""
    found = []
    for run in runs:
        window = _window(run)
        if window.duration_s < rule["min_duration_s"] or run.count < rule["min_bad_samples"]:
            continue
        seq, row = blocks.locate(run.first)
        back = f"good again at {run.returned}" if run.returned else "not good again in the record"
        found.append(
            Finding(
                anchor=seq,
                key=str(row),
                severity=rule.severity,
                title=(
                    f"{run.tag}: {run.count} sample(s) without a good value "
                    f"for {fmt_s(window.duration_s)}"
                ),
                detail=(
                    f"{run.tag} from {run.start} to {run.end} ({back}); quality: "
                    f"{', '.join(run.qualities)}"
                ),
                evidence=Evidence(
                    (seq, *blocks.seqs_between(run.first, run.last)),
                    window,
                    {"qualities": list(run.qualities), "row": row},
                ),
                time=run.start,
            )
        )
    return found


@dataclass
class _Alarm:
    """One raised alarm with the entries that cleared and acknowledged it."""

    raised: Entry
    clear: Entry | None = None
    ack: Entry | None = None

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in (self.raised, self.clear, self.ack) if e is not None]


def _alarm_list(view: BatchView, ack_kinds: list[str]) -> list[_Alarm]:
    """Raised alarms in order, each paired with its clear and acknowledgement."""
    alarms: list[_Alarm] = []
    active: dict[Any, _Alarm] = {}
    for entry in view.kind(Kind.ALARM_RAISED, Kind.ALARM_CLEARED, *ack_kinds):
        monitor = entry.data.get("monitor")
        if entry.kind == Kind.ALARM_RAISED:
            active[monitor] = _Alarm(entry)
            alarms.append(active[monitor])
        elif entry.kind == Kind.ALARM_CLEARED:
            raised = active.pop(monitor, None)
            if raised is not None:
                raised.clear = entry
        else:
            target = entry.data.get("alarm")
            match = next(
                (
                    a
                    for a in reversed(alarms)
                    if a.ack is None
                    and (a.raised.seq == target if target is not None else
                         a.raised.data.get("monitor") == monitor)
                ),
                None,
            )  # fmt: skip
            if match is not None:
                match.ack = entry
    return alarms


def alarms(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Alarms raised, with when they cleared and whether they were acknowledged; alarms
    of one monitor and level raised again within `merge_gap_s` of the last clear are
    one episode (a flapping alarm is one exception, not dozens)."""
    episodes: list[list[_Alarm]] = []
    latest: dict[tuple[Any, Any], list[_Alarm]] = {}
    for alarm in _alarm_list(view, rule["acknowledge_kinds"]):
        data = alarm.raised.data
        key = (data.get("monitor"), data.get("level"))
        episode = latest.get(key)
        last = episode[-1] if episode else None
        gap = (
            seconds_between(view.time(last.clear), str(data.get("at") or view.time(alarm.raised)))
            if last is not None and last.clear is not None
            else None
        )
        if episode is not None and gap is not None and gap <= rule["merge_gap_s"]:
            episode.append(alarm)
        else:
            latest[key] = [alarm]
            episodes.append(latest[key])
    return [_alarm_finding(view, rule, episode) for episode in episodes]


def _alarm_finding(view: BatchView, rule: RuleConfig, episode: list[_Alarm]) -> Finding:
    first, last = episode[0], episode[-1]
    data = first.raised.data
    name, level, tag = data.get("monitor"), str(data.get("level", "")), data.get("tag", "")
    when = str(data.get("at") or view.time(first.raised))

    def excess(alarm: _Alarm) -> float:
        value, limit = (
            number(alarm.raised.data.get("value")),
            number(alarm.raised.data.get("limit")),
        )
        return abs(value - limit) if value is not None and limit is not None else 0.0

    worst = max(episode, key=excess).raised.data
    cleared = (
        f"cleared at {view.time(last.clear)} (seq {last.clear.seq}, "
        f"{fmt_s(seconds_between(when, view.time(last.clear)))} after it was first raised)"
        if last.clear
        else "not cleared in the record"
    )
    acked = [a.ack for a in episode if a.ack is not None]
    beyond = f"{tag} = {fmt(worst.get('value'))} beyond {fmt(worst.get('limit'))}"
    if len(episode) == 1:
        title = f"{level} alarm {name}: {beyond}"
        ack_text = (
            f"acknowledged by {acked[0].data.get('user', '?')} (seq {acked[0].seq})"
            if acked
            else "not acknowledged"
        )
    else:
        title = f"{level} alarm {name} raised {len(episode)} times: worst {beyond}"
        ack_text = f"{len(acked)} of {len(episode)} acknowledged"
    return Finding(
        anchor=first.raised.seq,
        severity=rule["action_severity"] if level == "action" else rule.severity,
        title=title,
        detail=f"first raised at {when}, action {data.get('action', '—')}; {cleared}; {ack_text}",
        evidence=Evidence(
            tuple(seq for alarm in episode for seq in alarm.seqs),
            facts={
                "monitor": name,
                "level": level,
                "raised": len(episode),
                "worst_value": worst.get("value"),
                "limit": worst.get("limit"),
                "action": data.get("action"),
                "cleared_seq": last.clear.seq if last.clear else None,
                "acknowledged": len(acked),
                "acknowledged_by": sorted({str(a.data.get("user", "?")) for a in acked}),
            },
        ),
        time=when,
    )


def _command_before(view: BatchView, seq: int, command: str) -> Entry | None:
    for entry in reversed(view.kind(Kind.COMMAND_ACCEPTED)):
        if entry.seq < seq and entry.data.get("command") == command:
            return entry
    return None


def interruptions(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Holds (with their restart), stops, aborts, and controller interruptions."""
    found = []
    states = view.kind(Kind.BATCH_STATE)
    for i, entry in enumerate(states):
        to = entry.data.get("to")
        what = {"Holding": "hold", "Stopping": "stop", "Aborting": "abort"}.get(str(to))
        if what is None:
            continue
        cause = _command_before(view, entry.seq, what)
        by = f"{cause.data.get('user', '?')}" if cause else "?"
        reason = str(cause.data.get("reason") or "") if cause else ""
        seqs = [cause.seq] if cause else []
        detail = f"{what} by {by}" + (f": {reason}" if reason else "")
        severity = {"hold": rule.severity, "stop": rule["stop_severity"],
                    "abort": rule["abort_severity"]}[what]  # fmt: skip
        facts: dict[str, Any] = {"command": what, "user": by, "reason": reason}
        if what == "hold":
            restart = next(
                (s for s in states[i + 1 :] if s.data.get("to") in ("Restarting", "Stopping",
                                                                      "Aborting")),
                None,
            )  # fmt: skip
            if restart is not None:
                held = seconds_between(view.time(entry), view.time(restart))
                seqs.append(restart.seq)
                detail += f"; held {fmt_s(held)}, then {restart.data.get('to')} (seq {restart.seq})"
                facts["held_s"] = held
            else:
                detail += "; not restarted in the record"
        found.append(
            view.finding(
                entry,
                severity,
                f"batch {what}" + (f" by {by}" if cause else ""),
                detail,
                facts=facts,
                also=seqs,
            )
        )
    for entry in view.kind(Kind.BATCH_INTERRUPTED):
        data = entry.data
        restored = next((r for r in view.kind(Kind.BATCH_RESTORED) if r.seq > entry.seq), None)
        found.append(
            view.finding(
                entry,
                rule["interrupted_severity"],
                f"controller interrupted for {fmt_s(number(data.get('interruption_s')))}; "
                "batch resumed",
                (
                    f"last entry before: seq {data.get('last_entry_seq')} at "
                    f"{data.get('last_process_time') or data.get('last_entry_ts')}; detected "
                    f"{data.get('detected')} by {data.get('user', '?')} on "
                    f"{data.get('terminal', '?')}"
                    + (
                        f"; came back {restored.data.get('state')} (seq {restored.seq})"
                        if restored
                        else ""
                    )
                ),
                facts={k: data.get(k) for k in ("interruption_s", "last_entry_seq", "user")},
                also=[restored.seq] if restored else [],
            )
        )
    for entry in view.kind(Kind.CONFIG_CHANGED):
        data = entry.data
        changed = [
            line
            for line in str(data.get("diff", "")).splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        found.append(
            view.finding(
                entry,
                rule["interrupted_severity"],
                f"{data.get('file')} changed between start and resume",
                f"SHA-256 {str(data.get('was_sha256'))[:12]}… at start, "
                f"{str(data.get('sha256'))[:12]}… at resume; "
                + "; ".join(changed[:6])
                + (f"; and {len(changed) - 6} more line(s)" if len(changed) > 6 else ""),
                facts={"file": data.get("file")},
            )
        )
    return found


def comm_losses(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Instruments the engine lost (bad-quality sample runs come from the sample scan)."""
    found = []
    restored_all = view.kind(Kind.INSTRUMENT_RESTORED)
    for entry in view.kind(Kind.INSTRUMENT_LOST):
        unit = entry.data.get("unit")
        silent = number(entry.data.get("silent_process_s")) or 0.0
        back = next(
            (r for r in restored_all if r.seq > entry.seq and r.data.get("unit") == unit), None
        )
        after = seconds_between(view.time(entry), view.time(back)) if back else None
        total = silent + (after or 0.0)
        down = number(back.data.get("down_process_s")) if back else None
        if down is not None:  # the link's own account: from going down to coming back
            total = down
        if total < rule["min_duration_s"]:
            continue
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"instrument {unit} lost" + (f" for {fmt_s(total)}" if back else ""),
                (
                    (f"link down since {entry.data['since']}; " if entry.data.get("since") else "")
                    + f"no data from {unit} for {fmt_s(silent)} of process time when detected; "
                    + (
                        f"restored at {view.time(back)} (seq {back.seq})"
                        if back
                        else "not restored in the record"
                    )
                ),
                facts={"unit": unit, "silent_process_s": silent, "lost_s": total if back else None},
                also=[back.seq] if back else [],
            )
        )
    for entry in view.kind(Kind.INSTRUMENT_RESTARTED):
        data = entry.data
        differs = data.get("differs") or {}
        lost = ", ".join(
            f"{cap} {fmt(v.get('found'))} (written {fmt(v.get('written'))})"
            for cap, v in sorted(differs.items())
            if isinstance(v, dict)
        )
        policy = data.get("policy")
        why = f"{data['reason']}; " if data.get("reason") else ""
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"instrument {data.get('unit')} restarted"
                + (" and lost its setpoints" if lost else ""),
                why
                + (f"found {lost}; " if lost else "")
                + (
                    "the setpoints were re-asserted (journaled writes)"
                    if policy == "reassert"
                    else "the batch was held"
                ),
                facts={"unit": data.get("unit"), "policy": policy},
            )
        )
    return found


def _running_s(changes: list[Any], end: str | None, count_held: bool) -> tuple[float, str | None]:
    """(seconds the element ran, time it ended or None if it had not)."""
    start = next((c.time for c in changes if c.to == RUNNING), None)
    if start is None:
        return 0.0, None
    final = next((c.time for c in changes if c.to in FINAL), None)
    stop = final or end
    if count_held:
        return seconds_between(start, stop) or 0.0, final
    total, since = 0.0, None
    for c in changes:
        if c.to == RUNNING and since is None:
            since = c.time
        elif c.to != RUNNING and since is not None:
            total += seconds_between(since, c.time) or 0.0
            since = None
    if since is not None:
        total += seconds_between(since, stop) or 0.0
    return total, final


def step_durations(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Steps running longer than the recipe expects; waits whose condition timed out."""
    found = []
    for path, phase in view.phases.items():
        changes = view.states.get(path)
        if not changes:
            continue
        source = next((k for k in ("expected_duration", "duration", "timeout") if k in phase), "")
        expected = view.duration_s(phase.get(source)) if source else None
        if expected is None:
            continue
        ran, ended = _running_s(changes, view.last_time, rule["count_held_time"])
        limit = expected * rule["overrun_factor"] + rule["overrun_margin_s"]
        if ran <= limit:
            continue
        anchor = next((c for c in changes if c.to in FINAL), changes[-1])
        state = f"ended {anchor.to}" if ended else "still running at the end of the record"
        found.append(
            Finding(
                anchor=anchor.seq,
                severity=rule.severity,
                title=f"step {path} ran {fmt_s(ran)}, expected {fmt_s(expected)}",
                detail=(
                    f"{phase.get('type', 'phase')} {path}: {fmt_s(ran)} running"
                    f"{'' if rule['count_held_time'] else ' (held time not counted)'} against "
                    f"{source} {fmt(phase.get(source))} = {fmt_s(expected)} (listed above "
                    f"{fmt_s(limit)}); {state}"
                ),
                evidence=Evidence(
                    (anchor.seq, changes[0].seq),
                    facts={"expected_s": expected, "running_s": ran, "source": source},
                ),
                time=anchor.time,
                element=path,
            )
        )
    for entry in view.kind(Kind.CONDITION_TIMEOUT):
        element = entry.data.get("element")
        found.append(
            view.finding(
                entry,
                rule["late_severity"],
                f"step {element}: condition not met in time",
                f"{fmt(entry.data.get('condition') or entry.data.get('tag'))}; values "
                f"{fmt(entry.data.get('values', entry.data.get('value')))}",
                facts={"condition": entry.data.get("condition")},
                element=element,
            )
        )
    return found


_FAILED = (Kind.HOLDING_FAILED, Kind.RESTARTING_FAILED, Kind.STOPPING_FAILED, Kind.PHASE_FAILED)


def process_faults(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Failed writes, methods, phases and equipment logic; actions without a result;
    samples missing at the end; the wall clock stepping back."""
    found = []
    results = {e.data.get("intent"): e for e in view.kind(Kind.WRITE_RESULT, Kind.METHOD_RESULT)}

    def add(entry: Entry, title: str, detail: str, *more: int) -> None:
        found.append(
            view.finding(
                entry, rule.severity, title, detail, facts={"kind": entry.kind}, also=more,
                element=entry.data.get("element"),
            )
        )  # fmt: skip

    for entry in view.kind(Kind.WRITE_INTENT, Kind.METHOD_INTENT):
        d = entry.data
        what = d.get("capability") or d.get("method") or "?"
        result = results.get(entry.seq)
        if result is None:
            add(entry, f"{d.get('unit', '')} {what}: no recorded result",
                f"{entry.kind} at {d.get('element', '?')} has no result entry")  # fmt: skip
        elif result.data.get("ok") is False:
            add(result, f"{d.get('unit', '')} {what} failed: {fmt(result.data.get('error'))}",
                f"{entry.kind} seq {entry.seq} at {d.get('element', '?')}", entry.seq)  # fmt: skip
    for entry in view.kind(*_FAILED):
        add(
            entry, f"{entry.kind} at {entry.data.get('element', '?')}", fmt(entry.data.get("error"))
        )
    for entry in view.kind(Kind.SAMPLES_INCOMPLETE):
        add(entry, "samples incomplete at the end of the batch",
            f"until {entry.data.get('until')}: {entry.data.get('reason', '')}")  # fmt: skip
    for entry in view.kind(CLOCK_STEPPED_BACK):
        back = fmt(entry.data.get("stepped_back_us"))
        add(entry, "wall clock stepped back", f"by {back} µs; record times stayed increasing")
    return found
