"""Review rules about people and the record: changed parameters, overrides and repeated
steps, manual entries and their verification, signatures, chain-of-identity scans,
comments, simulation, refused commands. Each is a pure function of the batch view and
its settings."""

from __future__ import annotations

from typing import Any

from ebr.record.kinds import Kind
from ebr.record.model import Entry
from ebr.review.model import Evidence, Finding
from ebr.review.rules import RuleConfig
from ebr.review.view import BatchView, as_dict, fmt

RUNNING = "Running"


def parameters(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Formula values that differ from the master recipe."""
    found = []
    for name, item in sorted(view.parameters.items()):
        master, value = item.get("master"), item.get("value")
        if master == value and not item.get("changed"):
            continue
        unit = f" {item['unit']}" if item.get("unit") else ""
        found.append(
            Finding(
                anchor=view.created_seq,
                key=name,
                severity=rule.severity,
                title=f"{name} = {fmt(value)}{unit} (master {fmt(master)}{unit})",
                detail=(
                    f"the batch ran with {name} = {fmt(value)}{unit}; the master recipe says "
                    f"{fmt(master)}{unit}"
                ),
                evidence=Evidence(
                    (view.created_seq,), facts={"parameter": name, "master": master, "value": value}
                ),
                time=view.time(view.by_seq[view.created_seq])
                if view.created_seq in view.by_seq
                else None,
            )
        )
    return found


def overrides(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Overrides, forced and skipped steps (by kind), and steps started more than once."""
    found = []
    for entry in view.kind(*rule["kinds"]) if rule["kinds"] else []:
        data = entry.data
        element = data.get("element")
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"{entry.kind}"
                + (f" at {element}" if element else "")
                + (f" by {data['user']}" if data.get("user") else ""),
                ", ".join(f"{k}={fmt(v)}" for k, v in data.items() if k != "t"),
                facts=dict(data),
                element=element,
            )
        )
    if rule["repeated_steps"]:
        for path, changes in view.states.items():
            starts = [c for c in changes if c.to == RUNNING and c.trigger == "start"]
            for again in starts[1:]:
                found.append(
                    Finding(
                        anchor=again.seq,
                        severity=rule.severity,
                        title=f"step {path} started again",
                        detail=(
                            f"{path} started at seq {starts[0].seq} and again at seq {again.seq}"
                        ),
                        evidence=Evidence((again.seq, starts[0].seq)),
                        time=again.time,
                        element=path,
                    )
                )
    return found


def _prompts(view: BatchView) -> dict[int, Entry]:
    """Answer seq → the `prompt.opened` entry it answers: the latest one opened before it
    under that prompt id (a resumed controller numbers its prompts afresh)."""
    latest: dict[Any, Entry] = {}
    opened: dict[int, Entry] = {}
    for entry in view.kind(Kind.PROMPT_OPENED, Kind.PROMPT_ANSWERED):
        key = entry.data.get("prompt")
        if entry.kind == Kind.PROMPT_OPENED:
            latest[key] = entry
        elif key in latest:
            opened[entry.seq] = latest[key]
    return opened


def _values_text(values: Any, specs: dict[str, Any]) -> str:
    parts = []
    for name, value in as_dict(values).items():
        unit = as_dict(specs.get(name)).get("unit")
        parts.append(f"{name} = {fmt(value)}" + (f" {unit}" if unit else ""))
    return ", ".join(parts)


def _verifications(view: BatchView) -> dict[Any, Entry]:
    """`verified` signatures by the entry seq they refer to (`subject.seq`)."""
    refs: dict[Any, Entry] = {}
    for entry in view.kind(Kind.SIGNATURE):
        if entry.data.get("meaning") != "verified":
            continue
        subject = entry.data.get("subject")
        for key in ("seq", "entry_seq", "entry"):
            value = as_dict(subject).get(key)
            if value is not None:
                refs.setdefault(value, entry)
    return refs


def _verifier(
    view: BatchView, answer: Entry, signed: dict[Any, Entry]
) -> tuple[str | None, Entry | None]:
    """Who verified an answer: the journaled verifier, or a `verified` signature on it."""
    sig = signed.get(answer.seq)
    if sig is not None:
        return str(sig.data.get("username") or sig.data.get("user_id")), sig
    verifier = answer.data.get("verifier")
    return (str(verifier) if verifier else None), None


def manual_entries(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Values people typed, who entered them and who verified them."""
    found = []
    opened = _prompts(view)
    signed = _verifications(view)
    kinds = set(rule["prompt_kinds"])
    for answer in view.kind(Kind.PROMPT_ANSWERED):
        prompt = opened.get(answer.seq)
        if prompt is None:
            continue
        specs = as_dict(prompt.data.get("entries"))
        typed = rule["typed_numbers"] and any(
            as_dict(s).get("type") == "number" for s in specs.values()
        )
        if prompt.data.get("prompt_kind") not in kinds and not typed:
            continue
        verifier, sig = _verifier(view, answer, signed)
        user = answer.data.get("user", "?")
        element = str(answer.data.get("element") or prompt.data.get("element") or "")
        if verifier:
            how = f"e-signature seq {sig.seq}" if sig else "name only, no e-signature"
            check = f"verified by {verifier} ({how})"
        else:
            check = "NOT verified" + (" (required)" if prompt.data.get("verify") else "")
        sim = " (simulated operator)" if answer.data.get("simulated") else ""
        found.append(
            view.finding(
                answer,
                rule.severity,
                f"{element}: {_values_text(answer.data.get('values'), specs)}",
                f"entered by {user}{sim}, {check}",
                facts={
                    "user": user,
                    "verifier": verifier,
                    "verify_required": bool(prompt.data.get("verify")),
                    "values": answer.data.get("values"),
                    "simulated": bool(answer.data.get("simulated")),
                },
                also=tuple(e.seq for e in (prompt, sig) if e is not None),
                element=element,
            )
        )
    return found


def signatures(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Failed signature attempts; manual entries whose required verification is missing."""
    found = []
    meanings = set(rule["failed_meanings"])
    for entry in view.kind(Kind.SIGNATURE_FAILED):
        data = entry.data
        if data.get("meaning") not in meanings:
            continue
        subject = data.get("subject")
        if isinstance(subject, dict) and subject.get("type") == "qc_result":
            continue  # QC's own work after the batch, not the manufacturing record
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"failed {data.get('meaning', '?')} signature by {data.get('username', '?')}",
                f"{data.get('reason', '')}; subject {fmt(data.get('subject'))}",
                facts={k: data.get(k) for k in ("username", "meaning", "reason")},
            )
        )
    opened = _prompts(view)
    signed = _verifications(view)
    need_signature = rule["verification_needs_signature"] and not view.batch.header.simulation
    for answer in view.kind(Kind.PROMPT_ANSWERED):
        prompt = opened.get(answer.seq)
        if prompt is None or not prompt.data.get("verify"):
            continue
        verifier, sig = _verifier(view, answer, signed)
        unsigned = verifier and sig is None and need_signature
        if verifier and not unsigned:
            continue
        element = answer.data.get("element") or prompt.data.get("element")
        found.append(
            view.finding(
                answer,
                rule["missing_severity"],
                f"missing verification signature of the entry at {element}",
                f"entered by {answer.data.get('user', '?')}; the recipe requires a second "
                "person's verification and "
                + (
                    f"{verifier} is named without an e-signature"
                    if unsigned
                    else "none is recorded"
                ),
                facts={"user": answer.data.get("user")},
                also=(prompt.seq,),
                element=element,
            )
        )
    return found


def identity(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Chain-of-identity scans that did not match the batch."""
    found = []
    coi = view.batch.header.coi
    for entry in view.kind(Kind.IDENTITY_MISMATCH, Kind.IDENTITY_CONFIRMED):
        scanned = entry.data.get("scanned")
        expected = entry.data.get("expected", coi)
        if entry.kind == Kind.IDENTITY_CONFIRMED and scanned == coi:
            continue
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"chain of identity: scanned {fmt(scanned)}, batch is {fmt(expected)}",
                f"{entry.kind} at {entry.data.get('element', '?')}"
                + (f" by {entry.data['user']}" if entry.data.get("user") else ""),
                facts={"scanned": scanned, "expected": expected},
                element=entry.data.get("element"),
            )
        )
    return found


def comments(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Operators' comments on their answers, and comment entries."""
    found = []
    kinds = rule["kinds"]
    for entry in (
        view.kind(Kind.PROMPT_ANSWERED, *kinds) if kinds else view.kind(Kind.PROMPT_ANSWERED)
    ):
        text = entry.data.get("comment") if entry.kind == Kind.PROMPT_ANSWERED else (
            entry.data.get("text") or entry.data.get("comment")
        )  # fmt: skip
        if not isinstance(text, str) or not text.strip():
            continue
        user = entry.data.get("user", "?")
        element = entry.data.get("element")
        found.append(
            view.finding(
                entry,
                rule.severity,
                f"comment by {user}" + (f" at {element}" if element else ""),
                text.strip(),
                facts={"user": user, "comment": text.strip()},
                element=element,
            )
        )
    return found


def simulation(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """A simulation batch; simulated answers in a GMP batch."""
    simulated = [a for a in view.kind(Kind.PROMPT_ANSWERED) if a.data.get("simulated")]
    if view.batch.header.simulation:
        return [
            Finding(
                anchor=view.created_seq,
                severity=rule.severity,
                title="simulation batch — not for GMP use",
                detail=(
                    f"recorded in simulation mode; {len(simulated)} answer(s) by the "
                    "simulated operator"
                ),
                evidence=Evidence(
                    (view.created_seq, *(a.seq for a in simulated)),
                    facts={"simulated_answers": len(simulated)},
                ),
            )
        ]
    return [
        view.finding(
            a,
            rule.severity,
            f"simulated answer in a GMP batch at {a.data.get('element', '?')}",
            f"answered as simulated by {a.data.get('user', '?')}",
            facts={"user": a.data.get("user")},
            element=a.data.get("element"),
        )
        for a in simulated
    ]


def refused_commands(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Commands the engine refused."""
    return [
        view.finding(
            e,
            rule.severity,
            f"{e.data.get('command', '?')} refused for {e.data.get('user', '?')}",
            str(e.data.get("reason", "")),
            facts={"command": e.data.get("command"), "user": e.data.get("user")},
            element=e.data.get("element"),
        )
        for e in view.kind(Kind.COMMAND_REFUSED)
    ]


def qc_results(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """QC release-test results out of their specification (recorded with the verdict)."""
    found = []
    for entry in view.kind(Kind.QC_RESULT):
        data = entry.data
        if data.get("verdict") != "out of specification" and data.get("outcome") != "fail":
            continue
        spec = data.get("specification") or {}
        unit = f" {data['unit']}" if data.get("unit") else ""
        found.append(
            Finding(
                anchor=entry.seq,
                severity=rule.severity,
                title=f"QC result out of specification: {data.get('test', '?')}",
                detail=(
                    f"{data.get('test', '?')} = {data.get('value', data.get('outcome'))}{unit}; "
                    f"specification {fmt(spec)}"
                ),
                evidence=Evidence(
                    (entry.seq,), facts={k: data.get(k) for k in ("test", "value", "unit")}
                ),
            )
        )
    return found


def corrections(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Typed entries corrected after the fact: old and new values, reason, who (R4)."""
    found = []
    for entry in view.kind(Kind.ENTRY_CORRECTED):
        data = entry.data
        old, new = as_dict(data.get("old")), as_dict(data.get("new"))
        changes = "; ".join(f"{k} {fmt(old.get(k))} → {fmt(v)}" for k, v in new.items())
        element = str(data.get("element") or "")
        verifier = data.get("verifier")
        found.append(
            Finding(
                anchor=entry.seq,
                severity=rule.severity,
                title=f"corrected entry seq {data.get('corrects')}: {changes}",
                detail=(
                    f"by {data.get('user', '?')}"
                    + (f", verified by {verifier}" if verifier else "")
                    + f"; reason: {data.get('reason', '')}"
                ),
                evidence=Evidence(
                    (
                        entry.seq,
                        *((data["corrects"],) if isinstance(data.get("corrects"), int) else ()),
                    ),
                    facts={k: data.get(k) for k in ("corrects", "old", "new", "reason", "user")},
                ),
                element=element or None,
            )
        )
    return found
