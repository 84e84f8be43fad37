"""`cellbatch lot`: one patient's lot across linked batches — hand-overs, package, release.

Exit codes: 0 done, 1 refused or invalid (the reason on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cellbatch.cli_common import (
    db_option,
    open_store,
    password_of,
    plain_errors,
    table,
    user_option,
)
from ebr.exports.lot_package import write_package
from ebr.people.users import Directory
from ebr.review.exceptions import load_rules
from ebr.review.lots import (
    DECISIONS,
    LotDesk,
    build_package,
    lot_batches,
    lot_decision,
    lot_ids,
    read_lot_chain,
)


@click.group(name="lot")
def lot() -> None:
    """Lots: one patient's product (COI) across linked batches."""


@lot.command(name="list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@plain_errors
def list_command(db_url: str, as_json: bool) -> None:
    """Every lot: its batches, hand-overs and decision."""
    with open_store(db_url) as store:
        chain = read_lot_chain(store)
        rows: list[dict[str, Any]] = []
        for coi in lot_ids(store):
            batches = lot_batches(store, coi)
            decided = chain.decisions.get(coi)
            rows.append(
                {
                    "coi": coi,
                    "batches": [b.batch_id for b in batches],
                    "handovers": len(chain.handovers.get(coi, [])),
                    "decision": str(decided[-1][0].data.get("decision")) if decided else None,
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no lots")
        return
    click.echo(
        table(
            ("COI", "BATCHES", "DECISION", "HAND-OVERS"),
            [
                (r["coi"], ",".join(r["batches"]), r["decision"] or "-", str(r["handovers"]))
                for r in rows
            ],
        )
    )


@lot.command(name="show")
@db_option
@click.argument("coi")
@click.option("--json", "as_json", is_flag=True, help="Print the whole package as JSON.")
@plain_errors
def show_command(db_url: str, coi: str, as_json: bool) -> None:
    """A lot's batches, hand-overs, deviations, QC results and what blocks release."""
    with open_store(db_url) as store:
        package = build_package(store, coi, load_rules())
        decision = lot_decision(store, package)
    content = package.content
    if as_json:
        document = package.to_dict()
        document["decision"] = None if decision is None else decision.to_dict()
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"lot {coi}  {content['product']}  package sha256 {package.sha256}")
    for b in content["batches"]:
        verified = "intact" if b["verification"]["ok"] else "TAMPERED"
        click.echo(
            f"  batch {b['batch_id']:<20} {b['recipe']['name']}@{b['recipe']['version']:<8} "
            f"{b['state']:<9} {b['disposition']:<12} {verified}  site {b.get('site') or '-'}"
        )
        for q in b["qc_results"]:
            click.echo(
                f"      QC {q['cqa']:<22} {q['specification']:<16} {q['value']!s:<10} {q['status']}"
            )
    for h in content["handovers"]:
        click.echo(
            f"  hand-over {h['from_batch']} → {h['to_batch']}  {h['volume_ml']:g} mL "
            f"{h['viable_cells']:.3g} cells  {', '.join(h['containers'])}  by {h['user']} {h['ts']}"
        )
    for d in content["deviations"]:
        click.echo(
            f"  deviation {d['deviation_id']} [{d['status']}] {d['classification']}: {d['title']}"
        )
    if content["findings"]:
        click.echo("not releasable:")
        for finding in content["findings"]:
            click.echo(f"  - {finding}")
    else:
        click.echo("releasable: no findings")
    if decision is not None:
        state = "valid" if decision.signature.valid else f"INVALID: {decision.signature.problem}"
        click.echo(f"decision: {decision.decision} — {decision.signature.line()} ({state})")


@lot.command(name="package")
@db_option
@click.argument("coi")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder.")
@plain_errors
def package_command(db_url: str, coi: str, out_dir: str) -> None:
    """Compile the lot disposition package: one PDF and one JSON for the QP."""
    with open_store(db_url) as store:
        package = build_package(store, coi, load_rules())
        decision = lot_decision(store, package)
    json_path, pdf_path = write_package(package, Path(out_dir), decision)
    click.echo(f"{json_path}\n{pdf_path}\npackage sha256 {package.sha256}")
    if package.findings:
        click.echo(f"{len(package.findings)} finding(s) block release (see the package)")


@lot.command(name="handover")
@db_option
@click.argument("coi")
@click.option("--from", "from_batch", required=True, help="The batch whose output is handed over.")
@click.option("--to", "to_batch", required=True, help="The batch receiving it as its input.")
@click.option("--volume-ml", type=float, required=True, help="Volume handed over (mL).")
@click.option(
    "--cells", "viable_cells", type=float, required=True, help="Viable cells handed over."
)
@click.option(
    "--container", "containers", multiple=True, required=True, help="Container ID (repeatable)."
)
@click.option(
    "--scanned", required=True, help="The chain-of-identity label scanned on the containers."
)
@click.option("--comment", default=None)
@user_option
@plain_errors
def handover_command(
    db_url: str,
    coi: str,
    from_batch: str,
    to_batch: str,
    volume_ml: float,
    viable_cells: float,
    containers: tuple[str, ...],
    scanned: str,
    comment: str | None,
    username: str,
) -> None:
    """Record material handed from one batch to the next (identity checked, signed)."""
    with open_store(db_url) as store:
        entry = LotDesk(store, Directory(store), rules=load_rules()).handover(
            username,
            password_of(username),
            coi,
            from_batch=from_batch,
            to_batch=to_batch,
            volume_ml=volume_ml,
            viable_cells=viable_cells,
            containers=containers,
            scanned=scanned,
            comment=comment,
        )
    click.echo(
        f"hand-over {from_batch} → {to_batch} recorded at {entry.ts} (identity {coi} checked)"
    )


@lot.command(name="release")
@db_option
@click.argument("coi")
@click.option("--decision", required=True, type=click.Choice(DECISIONS))
@click.option("--comment", default=None)
@user_option
@plain_errors
def release_command(
    db_url: str, coi: str, decision: str, comment: str | None, username: str
) -> None:
    """The QP's lot decision: one signature over the package hash (refused with the reason)."""
    with open_store(db_url) as store:
        package, signature = LotDesk(store, Directory(store), rules=load_rules()).release(
            username, password_of(username), coi, decision, comment
        )
    click.echo(f"lot {coi} {decision}: {signature.line()}\npackage sha256 {package.sha256}")
