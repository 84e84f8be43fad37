"""`ebr` command group: list, verify and export batch records.

Exit codes: 0 success (and every verified batch intact), 1 error (unknown batch,
unreadable database, bad option value), 2 at least one batch record is tampered.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TextIO, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from ebr.checks import VerifyResult
from ebr.errors import EbrError
from ebr.export_batchml import batchml_document
from ebr.export_csv import export_csv
from ebr.export_json import export_json
from ebr.export_pdf import render_pdf
from ebr.export_schema import ebr_json_schema
from ebr.query import list_batches
from ebr.report.analysis import analyse
from ebr.store import Store
from ebr.verify import verify_all, verify_batch

if TYPE_CHECKING:
    from ebr.backup import BackupReport

DEFAULT_DB = "sqlite:///cellbatch.sqlite"
EXIT_ERROR = 1
EXIT_TAMPERED = 2
FORMATS = ("json", "csv", "pdf", "batchml")

_P = ParamSpec("_P")
_R = TypeVar("_R")

db_option = click.option(
    "--db",
    "db_url",
    envvar="CELLBATCH_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="Database URL or SQLite file path (env CELLBATCH_DB).",
)


def _fail(message: str) -> NoReturn:
    """Print an error line on stderr and exit with status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _plain_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn expected failures into one line on stderr and exit 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except EbrError as exc:
            _fail(str(exc))
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            _fail(f"database error: {reason}")
        except OSError as exc:
            _fail(str(exc))

    return wrapper


def _open(db_url: str) -> Store:
    """Open an existing eBR database; never create one as a side effect."""
    return Store.open(db_url, create=False)


@click.group(name="ebr")
def ebr() -> None:
    """Electronic batch record: list, verify and export batch records."""


@ebr.command(name="list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@_plain_errors
def list_command(db_url: str, as_json: bool) -> None:
    """List batches with their state, recipe, chain-of-identity id and entry count."""
    with _open(db_url) as store:
        summaries = list_batches(store)
    if as_json:
        click.echo(json.dumps([summary.to_dict() for summary in summaries], indent=2))
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
            str(s.entries),
        )
        for s in summaries
    ]
    click.echo(_table(("ID", "STATE", "RECIPE", "COI", "MODE", "ENTRIES"), rows))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Format rows as left-aligned columns (the last column right-aligned)."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
        return "  ".join([*padded, cells[-1].rjust(widths[-1])])

    return "\n".join(line(row) for row in (headers, *rows))


@ebr.command(name="verify")
@db_option
@click.argument("batch_id", required=False)
@_plain_errors
def verify_command(db_url: str, batch_id: str | None) -> None:
    """Verify one batch (or all): hash chain, head, batch header and sample blocks.

    Exit 0 when intact, 2 when any batch record is tampered (first bad record on stderr).
    """
    with _open(db_url) as store:
        results = [verify_batch(store, batch_id)] if batch_id else verify_all(store)
    if not results:
        click.echo("no batches")
        return
    tampered = [result for result in results if not result.ok]
    for result in results:
        click.echo(_verdict(result))
    for result in tampered:
        click.echo(f"{result.batch_id}: {result.first_problem}", err=True)
    if tampered:
        sys.exit(EXIT_TAMPERED)


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
@_plain_errors
def export_command(db_url: str, batch_id: str, fmt: str, out: Path | None) -> None:
    """Export one batch record: JSON (complete, verifiable offline), CSV (samples),
    PDF (human-readable, needs --out) or BatchML (ISA-88 part 4 XML)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        _fail(f"unsupported export format {fmt!r} (choose json, csv, pdf or batchml)")
    if fmt == "pdf" and out is None:
        _fail("--format pdf needs --out FILE (a PDF is not written to a terminal)")
    with _open(db_url) as store:
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
@_plain_errors
def backup_command(db_url: str, file: Path) -> None:
    """Copy the store into a new SQLite backup FILE, then verify every batch in the copy.

    SQLite stores are copied with the online backup API while writers continue;
    PostgreSQL stores row by row from one snapshot. FILE must not exist. Exit 0 when
    every batch in the copy is intact, 2 when any is tampered (the copy is kept).
    """
    from ebr.backup import backup

    _backup_report(backup(db_url, file))


@ebr.command(name="restore")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_plain_errors
def restore_command(db_url: str, file: Path) -> None:
    """Restore the backup FILE into the new or empty store --db, then verify every batch.

    Refuses a target store that holds any batch record. Exit codes as for backup.
    """
    from ebr.backup import restore

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
