"""Crash recovery: where an interrupted batch stood, read back from its journal.

The journal is the only truth: which elements completed, which were active, what
each active phase had done (its journaled progress, its acknowledged writes and
method results) and how long it had run. A resumed batch comes back Held at that
point and continues on restart; a step that is not idempotent is never repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.alarms import ALARM_KINDS, OpenAlarm, follow_alarms
from controller.isa88 import FINAL_STATES, State
from controller.phases import KEPT_ON_REPEAT
from ebr import Entry, Store, read_journal
from ebr.record.kinds import Kind
from recipes import Recipe, parse_recipe


class ResumeError(Exception):
    """The batch cannot be resumed (unknown, already ended, record inconsistent)."""


def parse_t(text: str) -> datetime:
    """A journaled process time (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class ResumePoint:
    """The state of an interrupted batch as its journal tells it."""

    batch_id: str
    recipe: Recipe
    parameters: dict[str, float]
    equipment: dict[str, str]  # alias → unit name
    coi: str
    completed: set[str] = field(default_factory=set)
    active: list[str] = field(default_factory=list)  # element paths, outermost first
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    running_s: dict[str, float] = field(default_factory=dict)
    monitors: list[str] = field(default_factory=list)
    last_t: datetime | None = None
    last_state: State = State.IDLE
    alarms: dict[int, OpenAlarm] = field(default_factory=dict)
    """Alarms raised and not acknowledged, by the seq of their `alarm.raised` entry."""
    pinned: dict[str, dict[str, str]] = field(default_factory=dict)
    """The configuration files the batch started with: ``plant`` and each alias's
    profile, as ``{"sha256", "content"}``."""


def _last_process_time(entries: list[Entry]) -> datetime | None:
    times = [
        parse_t(str(e.data.get("t") or e.data.get("last")))
        for e in entries
        if e.data.get("t") or e.data.get("last")
    ]
    return max(times) if times else None


def _pinned(created: dict[str, Any]) -> dict[str, dict[str, str]]:
    pinned: dict[str, dict[str, str]] = {}
    plant = created.get("plant") or {}
    if plant.get("sha256"):
        pinned["plant"] = {"sha256": plant["sha256"], "content": str(plant.get("content", ""))}
    for alias, e in (created.get("equipment") or {}).items():
        if e.get("profile_sha256"):
            pinned[alias] = {
                "sha256": e["profile_sha256"],
                "content": str(e.get("profile_content", "")),
            }
    return pinned


def load_resume_point(store: Store, batch_id: str) -> ResumePoint:
    """Read an interrupted batch's journal into a resume point."""
    entries = read_journal(store, batch_id)
    if not entries or entries[0].kind != Kind.BATCH_CREATED:
        raise ResumeError(f"{batch_id}: the record does not start with batch.created")
    created = entries[0].data
    doc = created["recipe"]["content"]
    recipe = parse_recipe(json.dumps(doc), f"{batch_id} (recipe as recorded)")
    if recipe.content_hash != created["recipe"]["content_hash"]:
        raise ResumeError(f"{batch_id}: the recorded recipe does not match its content hash")
    point = ResumePoint(
        batch_id=batch_id,
        recipe=recipe,
        parameters={k: float(v["value"]) for k, v in created["parameters"].items()},
        equipment={alias: str(e["unit"]) for alias, e in created["equipment"].items()},
        coi=str(created.get("header", {}).get("coi") or created.get("coi", "")),
        last_t=_last_process_time(entries),
        pinned=_pinned(created),
    )
    states: dict[str, State] = {}
    order: list[str] = []
    running_since: dict[str, datetime] = {}
    for e in entries:
        data = e.data
        if e.kind in (Kind.BATCH_STATE, Kind.ELEMENT_STATE):
            path, dst = str(data["element"]), State(data["to"])
            if path not in states:
                order.append(path)
            states[path] = dst
            when = parse_t(str(data["t"]))
            if dst is State.RUNNING:
                running_since[path] = when
            elif path in running_since:
                start = running_since.pop(path)
                point.running_s[path] = (
                    point.running_s.get(path, 0.0) + (when - start).total_seconds()
                )
        elif e.kind == Kind.STEP_REPEATED:  # a supervisor's repeat: from the start again
            path = str(data["element"])
            old = point.progress.get(path, {})
            point.progress[path] = {k: v for k, v in old.items() if k in KEPT_ON_REPEAT}
            point.running_s.pop(path, None)
        elif e.kind == Kind.PHASE_PROGRESS:
            point.progress[str(data["element"])] = dict(data["progress"])
        elif e.kind == Kind.WRITE_RESULT and data.get("ok"):
            prog = point.progress.setdefault(str(data["element"]), {})
            written = prog.setdefault("written", [])
            if data["capability"] not in written:
                written.append(data["capability"])
        elif e.kind == Kind.METHOD_INTENT:
            point.progress.setdefault(str(data["element"]), {})["called"] = True
        elif e.kind == Kind.METHOD_RESULT and data.get("ok"):
            point.progress.setdefault(str(data["element"]), {})["done"] = True
        elif e.kind == Kind.PROMPT_ANSWERED:
            point.progress.setdefault(str(data["element"]), {})["answer"] = dict(data["values"])
        elif e.kind == Kind.IDENTITY_MISMATCH:
            point.progress.setdefault(str(data["element"]), {}).pop("answer", None)
        elif e.kind == Kind.MONITORS_ACTIVE:
            point.monitors.extend(str(m) for m in data["monitors"])
        elif e.kind in ALARM_KINDS:
            follow_alarms(point.alarms, e)
    batch_state = states.get(batch_id, State.IDLE)
    if batch_state in FINAL_STATES:
        raise ResumeError(f"{batch_id} has already ended ({batch_state.value}); nothing to resume")
    if batch_state is State.IDLE:
        raise ResumeError(f"{batch_id} never started; start a new batch instead")
    point.last_state = batch_state
    for path, started in running_since.items():  # running when the process died
        if point.last_t is not None:
            elapsed = (point.last_t - started).total_seconds()
            point.running_s[path] = point.running_s.get(path, 0.0) + max(0.0, elapsed)
    for path in order:
        if path == batch_id:
            continue
        if states[path] is State.COMPLETE:
            point.completed.add(path)
        elif states[path] not in FINAL_STATES:
            point.active.append(path)
    return point
