"""`ebr` command group: list, verify and export batch records.

Exit codes: 0 success (and every verified batch intact), 1 error (unknown batch,
unreadable database, bad option value), 2 at least one batch record is tampered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from cellbatch.cli_common import (
    EXIT_TAMPERED,
    db_option,
    fail,
    open_store,
    password_of,
    plain_errors,
    second_password,
    table,
    user_option,
)
from ebr.exports.batchml import batchml_document
from ebr.exports.csv import export_csv
from ebr.exports.json import export_json
from ebr.exports.pdf import render_pdf
from ebr.exports.report.analysis import analyse
from ebr.exports.schema import ebr_json_schema
from ebr.people.users import Directory
from ebr.record.checks import Problem, VerifyResult
from ebr.record.errors import EbrError
from ebr.record.model import SITE_CHAIN
from ebr.record.query import list_batches
from ebr.record.rollback import check_trust, check_witness
from ebr.record.signing import load_public_key
from ebr.record.store import Store
from ebr.record.verify import verify_batch, verify_store
from ebr.review.corrections import correct
from ebr.review.exceptions import Rules, load_rules
from ebr.review.offline import verify_export_file
from ebr.review.release import DECISIONS, QaDesk, QaStatus, qa_status
from ebr.review.specs import load_specs

if TYPE_CHECKING:
    from ebr.record.backup import BackupReport

FORMATS = ("json", "csv", "pdf", "batchml")

rules_option = click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site review rules file (default $CELLBATCH_REVIEW_RULES, else the packaged rules).",
)


@click.group(name="ebr")
def ebr() -> None:
    """Electronic batch record: list, verify and export batch records."""


@ebr.command(name="list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@plain_errors
def list_command(db_url: str, as_json: bool) -> None:
    """List batches: state, recipe, chain-of-identity ID, mode, exceptions (open/all)
    under the review rules, and disposition."""
    with open_store(db_url) as store:
        summaries = list_batches(store)
        rules = load_rules()
        reviews = {s.batch_id: _qa_or_none(store, s.batch_id, rules) for s in summaries}
    if as_json:
        listed = [
            {
                **s.to_dict(),
                **_review_counts(reviews[s.batch_id]),
            }
            for s in summaries
        ]
        click.echo(json.dumps(listed, indent=2))
        return
    if not summaries:
        click.echo("no batches")
        return
    rows = [
        (
            s.batch_id,
            s.state,
            f"{s.recipe_name}@{s.recipe_version}",
            s.coi,
            "SIM" if s.simulation else "GMP",
            _exc_text(reviews[s.batch_id]),
            _disposition_text(reviews[s.batch_id]),
            str(s.entries),
        )
        for s in summaries
    ]
    headers = ("ID", "STATE", "RECIPE", "COI", "MODE", "EXC", "DISPOSITION", "ENTRIES")
    click.echo(table(headers, rows))


@ebr.command(name="verify")
@db_option
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=min(os.cpu_count() or 1, 8),
    show_default="CPUs, at most 8",
    help="Worker processes for a whole store of 50,000 entries or more.",
)
@click.option(
    "--trust",
    "trust",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A public (or private) key file the store must be anchored by (repeatable).",
)
@click.option(
    "--witness",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A witness file of signed heads: finds a store rolled back to an older copy.",
)
@click.option(
    "--file",
    "export_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Verify a JSON export offline instead (no database): chain, digests, signed head.",
)
@rules_option
@click.argument("batch_id", required=False)
@plain_errors
def verify_command(
    db_url: str,
    jobs: int,
    trust: tuple[Path, ...],
    witness: Path | None,
    export_file: Path | None,
    rules_path: str | None,
    batch_id: str | None,
) -> None:
    """Verify one batch (or all): hash chain, head, batch header, sample blocks, and the
    signed checkpoints and site batch index (when the store has signing keys); or, with
    --file EXPORT.json, a JSON export with no database: its signed head and signatures too.

    Exit 0 when intact, 2 when any batch record is tampered (first bad record on stderr).
    """
    if export_file is not None:
        if batch_id:
            fail("give a BATCH_ID or --file, not both")
        _verify_file(export_file, trust, rules_path)
        return
    started = time.perf_counter()
    with open_store(db_url) as store:
        if batch_id:
            results, processes = [verify_batch(store, batch_id)], 1
        else:
            run = verify_store(store, jobs=jobs)
            results, processes = run.results, run.processes
        results = _outside_checks(store, results, trust, witness, batch_id)
    if not results:
        click.echo("no batches")
        return
    tampered = [result for result in results if not result.ok]
    for result in results:
        click.echo(_verdict(result))
    entries = sum(result.entries_checked for result in results)
    elapsed = time.perf_counter() - started
    click.echo(
        f"{len(results)} batch(es), {entries:,} entries verified in {elapsed:.2f} s "
        f"({processes} process{'es' if processes > 1 else ''})"
    )
    for result in tampered:
        click.echo(f"{result.batch_id}: {result.first_problem}", err=True)
    if tampered:
        sys.exit(EXIT_TAMPERED)


_MAX_EXPORT = 2 * 1024**3


def _verify_file(path: Path, trust: tuple[Path, ...], rules_path: str | None) -> None:
    """`ebr verify --file`: one verdict line; exit 2 naming the first problem (entry,
    sample block, signed head or signature)."""
    if path.stat().st_size > _MAX_EXPORT:
        fail(f"{path}: larger than {_MAX_EXPORT // 1024**3} GiB; not a batch export")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        fail(f"{path}: not UTF-8 text (byte {exc.start})")
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}")
    except RecursionError:
        fail(f"{path}: JSON nested too deeply")
    if not isinstance(doc, dict):
        fail(f"{path}: not a cellbatch JSON export (want an object)")
    trusted = [load_public_key(key) for key in trust] or None
    verdict = verify_export_file(doc, load_rules(rules_path), trusted)
    result = verdict.result
    signatures = len(verdict.signatures)
    state = "intact" if verdict.ok else "TAMPERED"
    click.echo(
        f"{verdict.batch_id}: {state} — {result.entries_checked} entries, "
        f"{result.blocks_checked} sample blocks, {signatures} signature(s) checked ({path})"
    )
    if not verdict.ok:
        click.echo(f"{verdict.batch_id}: {verdict.first_problem}", err=True)
        sys.exit(EXIT_TAMPERED)


def _outside_checks(
    store: Store,
    results: list[VerifyResult],
    trust: tuple[Path, ...],
    witness: Path | None,
    batch_id: str | None,
) -> list[VerifyResult]:
    """Add what keys and witness files kept outside the store show (pinning, rollback)."""
    extra: dict[str, list[Problem]] = {}
    if trust:
        problem = check_trust(store, [load_public_key(path) for path in trust])
        if problem is not None:
            extra[SITE_CHAIN] = [problem]
    if witness is not None:
        for found_id, problems in check_witness(store, witness).items():
            if batch_id is None or found_id == batch_id:
                extra.setdefault(found_id, []).extend(problems)
    if not extra:
        return results
    out = []
    for result in results:
        more = tuple(extra.pop(result.batch_id, ()))
        out.append(dataclasses.replace(result, problems=result.problems + more))
    out.extend(VerifyResult(found_id, 0, 0, tuple(p)) for found_id, p in sorted(extra.items()))
    return out


def _verdict(result: VerifyResult) -> str:
    """One line per batch for stdout."""
    state = "intact" if result.ok else "TAMPERED"
    return (
        f"{result.batch_id}: {state} — {result.entries_checked} entries, "
        f"{result.blocks_checked} sample blocks checked"
    )


@ebr.command(name="export")
@db_option
@click.argument("batch_id")
@click.option(
    "--format", "fmt", default="json", show_default=True, help="json, csv, pdf or batchml."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default stdout)."
)
@plain_errors
def export_command(db_url: str, batch_id: str, fmt: str, out: Path | None) -> None:
    """Export one batch record: JSON (complete, verifiable offline), CSV (samples),
    PDF (human-readable, needs --out) or BatchML (ISA-88 part 4 XML)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        fail(f"unsupported export format {fmt!r} (choose json, csv, pdf or batchml)")
    if fmt == "pdf" and out is None:
        fail("--format pdf needs --out FILE (a PDF is not written to a terminal)")
    with open_store(db_url) as store:
        if fmt in ("pdf", "batchml"):
            record = analyse(store, batch_id)  # one snapshot, verified once
            if fmt == "pdf":
                _doc, data = render_pdf(record)
            else:
                data = batchml_document(record)
            _write_bytes(out, data)
            if not record.verification.ok:
                problem = record.verification.first_problem
                click.echo(f"warning: {batch_id} failed verification: {problem}", err=True)
            return
        if fmt == "json":
            doc = export_json(store, batch_id)
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
            _write(out, lambda stream: stream.write(text))
            if not doc["verification"]["ok"]:
                problem = doc["verification"]["problems"][0]["message"]
                click.echo(f"warning: {batch_id} failed verification: {problem}", err=True)
        else:
            _write(out, lambda stream: export_csv(store, batch_id, stream))


def _write_bytes(out: Path | None, data: bytes) -> None:
    """Write `data` to the output file (whole, then renamed) or to binary stdout."""
    if out is None:
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()
        return
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


@ebr.command(name="schema")
def schema_command() -> None:
    """Print the JSON Schema (draft 2020-12) of the JSON export."""
    click.echo(json.dumps(ebr_json_schema(), indent=2, ensure_ascii=False))


def _write(out: Path | None, produce: Callable[[TextIO], object]) -> None:
    """Run `produce` on the output file (written whole, then renamed) or on stdout."""
    if out is None:
        stream = sys.stdout
        produce(stream)
        stream.flush()
        return
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            produce(handle)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


@ebr.command(name="backup")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@plain_errors
def backup_command(db_url: str, file: Path) -> None:
    """Copy the store into a new SQLite backup FILE, then verify every batch in the copy.

    SQLite stores are copied with the online backup API while writers continue;
    PostgreSQL stores row by row from one snapshot. FILE must not exist. Exit 0 when
    every batch in the copy is intact, 2 when any is tampered (the copy is kept).
    """
    from ebr.record.backup import backup

    _backup_report(backup(db_url, file))


@ebr.command(name="restore")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@plain_errors
def restore_command(db_url: str, file: Path) -> None:
    """Restore the backup FILE into the new or empty store --db, then verify every batch.

    Refuses a target store that holds any batch record. Exit codes as for backup.
    """
    from ebr.record.backup import restore

    _backup_report(restore(file, db_url))


def _backup_report(report: BackupReport) -> None:
    """Print the verdict per batch and a summary; exit 2 when any batch is tampered."""
    for result in report.results:
        click.echo(_verdict(result))
    click.echo(report.summary())
    tampered = [result for result in report.results if not result.ok]
    for result in tampered:
        click.echo(f"{result.batch_id}: {result.first_problem}", err=True)
    if tampered:
        sys.exit(EXIT_TAMPERED)


# -- review by exception and release ---------------------------------------------------


spec_option = click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site release-test specifications (default $CELLBATCH_SPECS over the packaged ones).",
)


def _desk(store: Store, rules_path: str | None, spec_path: str | None = None) -> QaDesk:
    return QaDesk(
        store, Directory(store), rules=load_rules(rules_path), specs=load_specs(spec_path)
    )


@ebr.command(name="review")
@db_option
@click.argument("batch_id")
@rules_option
@click.option("--json", "as_json", is_flag=True, help="Print the review state as JSON.")
@click.option("--sign", is_flag=True, help="Sign the review of the whole record (QA).")
@click.option("--user", "username", default=None, help="Who signs (with --sign).")
@click.option("--comment", default=None, help="Comment on the review signature.")
@plain_errors
def review_command(
    db_url: str,
    batch_id: str,
    rules_path: str | None,
    as_json: bool,
    sign: bool,
    username: str | None,
    comment: str | None,
) -> None:
    """The review-by-exception list of a batch: each exception with its evidence and
    whether it is dispositioned; signatures and release state. With --sign --user QA,
    sign the review (refused while any exception is open)."""
    with open_store(db_url) as store:
        desk = _desk(store, rules_path)
        if sign:
            if not username:
                fail("--sign needs --user NAME")
            signature = desk.sign_review(batch_id, username, password_of(username), comment)
            click.echo(f"reviewed: {signature.line()}")
            return
        status = desk.status(batch_id)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(_review_text(status))


def _qa_or_none(store: Store, batch_id: str, rules: Rules) -> QaStatus | None:
    """The batch's review state, or None when it cannot be computed (run verify)."""
    try:
        return qa_status(store, batch_id, rules)
    except EbrError:
        return None


def _review_counts(status: QaStatus | None) -> dict[str, Any]:
    if status is None:
        return {"exceptions": None, "open_exceptions": None, "disposition": None}
    return {
        "exceptions": len(status.exceptions),
        "open_exceptions": len(status.open_exceptions),
        "disposition": status.disposition,
    }


def _exc_text(status: QaStatus | None) -> str:
    return "?" if status is None else f"{len(status.open_exceptions)}/{len(status.exceptions)}"


def _disposition_text(status: QaStatus | None) -> str:
    if status is None:
        return "? (run verify)"
    return "INVALID (run verify)" if not status.valid else status.disposition


def _review_text(status: QaStatus) -> str:
    """The review list for a terminal."""
    header = status.record.header
    mode = "SIMULATION — not for GMP use" if header.simulation else "GMP"
    lines = [
        f"batch {header.batch_id}  {header.recipe_name} {header.recipe_version}  "
        f"COI {header.coi}  {mode}",
        f"state {status.state}; disposition {status.disposition}; "
        f"{len(status.exceptions)} exception(s), {len(status.open_exceptions)} open",
    ]
    for item in status.exceptions:
        exc = item.exception
        mark = "OPEN" if item.open else "done"
        lines.append(f"  [{mark}] {exc.line()}")
        lines.append(f"         {exc.detail}")
        seqs = ", ".join(str(seq) for seq in exc.evidence.seqs)
        window = exc.evidence.window
        evidence = f"journal #{seqs}" + (
            f"; samples {window.tag} {window.start} … {window.end}" if window else ""
        )
        lines.append(f"         evidence: {evidence}")
        if item.signature is not None and item.disposition is not None:
            lines.append(f"         disposition: {item.disposition.data['comment']}")
            lines.append(f"         signed: {item.signature.line()}")
    if status.pending:
        missing = [t for t in status.pending if t not in status.results]
        lines.append(f"pending results: {', '.join(missing) or 'none'}")
    if status.signatures:
        lines.append("signatures:")
        lines.extend(f"  {sig.line()}" for sig in status.signatures)
    return "\n".join(lines)


@ebr.command(name="disposition")
@db_option
@click.argument("batch_id")
@click.argument("exception_id")
@click.option("--comment", required=True, help="The justification.")
@click.option("--deviation", "deviation_id", default=None, help="Linked deviation ID.")
@rules_option
@user_option
@plain_errors
def disposition_command(
    db_url: str,
    batch_id: str,
    exception_id: str,
    comment: str,
    deviation_id: str | None,
    rules_path: str | None,
    username: str,
) -> None:
    """Sign off one exception (QA or QP, 'reviewed'); exit 1 when refused."""
    with open_store(db_url) as store:
        signature = _desk(store, rules_path).dispose(
            batch_id, username, password_of(username), exception_id, comment, deviation_id
        )
    click.echo(f"{exception_id}: dispositioned; {signature.line()}")


@ebr.command(name="release")
@db_option
@click.argument("batch_id")
@click.option(
    "--decision",
    required=True,
    type=click.Choice(DECISIONS),
    help="The decision (a simulation record: rejected or 'not for use' only).",
)
@click.option(
    "--pending",
    multiple=True,
    metavar="TEST",
    help="Release pending this result (repeat); record it later with `ebr result`.",
)
@click.option("--comment", default=None, help="Comment on the decision.")
@rules_option
@spec_option
@user_option
@plain_errors
def release_command(
    db_url: str,
    batch_id: str,
    decision: str,
    pending: tuple[str, ...],
    comment: str | None,
    rules_path: str | None,
    spec_path: str | None,
    username: str,
) -> None:
    """The QP's release signature: released, released pending results, rejected or not
    for use.

    Refused (exit 1) to anyone but a QP, while any exception is open, without a QA
    review signature, to the reviewer, while pending results are missing or failed, and
    for a simulation record (SIM-NOT-PRODUCT).
    """
    with open_store(db_url) as store:
        desk = _desk(store, rules_path, spec_path)
        signature = desk.release(
            batch_id, username, password_of(username), decision, pending=pending, comment=comment
        )
        status = desk.status(batch_id)
    click.echo(f"batch {batch_id}: {status.disposition}; {signature.line()}")


@ebr.command(name="result")
@db_option
@click.argument("batch_id")
@click.argument("test")
@click.argument("value")
@click.option("--unit", default=None, help="The value's unit (numeric tests: as specified).")
@click.option("--comment", default=None, help="Comment (e.g. the certificate number).")
@rules_option
@spec_option
@user_option
@plain_errors
def result_command(
    db_url: str,
    batch_id: str,
    test: str,
    value: str,
    unit: str | None,
    comment: str | None,
    rules_path: str | None,
    spec_path: str | None,
    username: str,
) -> None:
    """Record a QC release-test result (qc role only; signed, 'performed'): VALUE is a
    number with --unit, pass/fail, or text, as the product's specification of TEST says.
    The verdict is computed; out of specification blocks release (QC-OOS)."""
    with open_store(db_url) as store:
        desk = _desk(store, rules_path, spec_path)
        signature = desk.record_result(
            batch_id, username, password_of(username), test, value, unit, comment
        )
        result = desk.status(batch_id).results[test]
    shown = f"{result['value']}{' ' + str(result['unit']) if result.get('unit') else ''}"
    click.echo(f"{batch_id}: {test} = {shown}, {result['verdict']}; {signature.line()}")


def _typed(text: str) -> float | str:
    """A corrected value: a number when it reads as one, else the text."""
    try:
        return float(text)
    except ValueError:
        return text


@ebr.command(name="correct")
@db_option
@click.argument("batch_id")
@click.argument("seq", type=int)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    required=True,
    metavar="NAME=VALUE",
    help="A corrected value of the typed entry (repeat for several).",
)
@click.option("--reason", required=True, help="Why the entry is corrected (journaled).")
@click.option(
    "--verifier",
    default=None,
    help="Second person (needed where the original was verified); password: prompt or "
    "CELLBATCH_VERIFIER_PASSWORD.",
)
@rules_option
@user_option
@plain_errors
def correct_command(
    db_url: str,
    batch_id: str,
    seq: int,
    assignments: tuple[str, ...],
    reason: str,
    verifier: str | None,
    rules_path: str | None,
    username: str,
) -> None:
    """Correct a typed entry (prompt answer at SEQ) of an ended batch with a new signed
    entry (R4): the original stays in the record; review lists the correction."""
    values: dict[str, float | str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--set {item!r}: want NAME=VALUE")
        values[name.strip()] = _typed(value.strip())
    checker = None
    if verifier:
        checker = (verifier, second_password(verifier))
    with open_store(db_url) as store:
        entry = correct(
            _desk(store, rules_path),
            batch_id,
            seq,
            values,
            reason,
            (username, password_of(username)),
            checker,
        )
    changes = ", ".join(f"{k} {entry.data['old'][k]} → {v}" for k, v in entry.data["new"].items())
    click.echo(f"{batch_id}: seq {seq} corrected at seq {entry.seq} ({changes})")
