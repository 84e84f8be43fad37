"""`cellbatch deviation`: deviations with impact, root cause and CAPA, closed by QA.

Exit codes: 0 done, 1 refused or invalid (the reason on stderr).
"""

from __future__ import annotations

import json

import click

from cellbatch.cli_common import (
    db_option,
    open_store,
    password_of,
    plain_errors,
    table,
    user_option,
)
from ebr.people.users import Directory
from ebr.review.deviations import CAPA_STATES, CLASSIFICATIONS, Deviation, DeviationDesk
from ebr.review.exceptions import load_rules

links_options = [
    click.option("--batch", "batches", multiple=True, help="Link a batch (repeatable)."),
    click.option("--lot", "lots", multiple=True, help="Link a lot by its COI (repeatable)."),
    click.option(
        "--exception",
        "exceptions",
        multiple=True,
        help="Link a review exception as BATCH_ID/EXCEPTION_ID (repeatable).",
    ),
]


def _with_links(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(links_options):
        command = option(command)
    return command


def _links(batches: tuple[str, ...], lots: tuple[str, ...], exceptions: tuple[str, ...]) -> dict:
    return {"batches": list(batches), "lots": list(lots), "exceptions": list(exceptions)}


@click.group(name="deviation")
def deviation() -> None:
    """Deviations and CAPA: open, list, show, update, close (own hash chain)."""


@deviation.command(name="open")
@db_option
@click.option("--title", default=None, help="One line naming the event.")
@click.option("--classification", type=click.Choice(CLASSIFICATIONS), default=None)
@click.option("--description", default=None, help="What happened.")
@click.option("--impact", default=None, help="Impact assessment, if known.")
@_with_links
@click.option(
    "--from-batch",
    "from_batch",
    default=None,
    help="Open one deviation per critical exception or hold of this batch (automatic; "
    "still needs --user: who opens them, authenticated).",
)
@click.option(
    "--user",
    "username",
    default=None,
    help="Who opens it (password asked, else CELLBATCH_PASSWORD); recorded as the opener.",
)
@plain_errors
def open_command(
    db_url: str,
    title: str | None,
    classification: str | None,
    description: str | None,
    impact: str | None,
    batches: tuple[str, ...],
    lots: tuple[str, ...],
    exceptions: tuple[str, ...],
    from_batch: str | None,
    username: str | None,
) -> None:
    """Open a deviation by hand, or automatically from a batch's exceptions (--from-batch).
    Either way a person opens it: --user, authenticated, recorded as the opener."""
    if from_batch is not None and not username:
        raise click.UsageError("--from-batch needs --user (who opens the deviations)")
    with open_store(db_url) as store:
        desk = DeviationDesk(store, Directory(store))
        if from_batch is not None:
            assert username  # checked above
            opened = desk.open_automatic(
                from_batch, load_rules(), username=username, password=password_of(username)
            )
            for dev in opened:
                click.echo(f"{dev.deviation_id}  {dev.classification:<8} {dev.title}")
            click.echo(f"{len(opened)} deviation(s) opened from batch {from_batch}")
            return
        missing = [
            name
            for name, value in (
                ("--title", title),
                ("--classification", classification),
                ("--description", description),
                ("--user", username),
            )
            if not value
        ]
        if missing:
            raise click.UsageError(f"opening by hand needs {', '.join(missing)}")
        assert title and classification and description and username
        dev = desk.open(
            username,
            password_of(username),
            classification=classification,
            title=title,
            description=description,
            impact=impact,
            links=_links(batches, lots, exceptions),
        )
    click.echo(f"{dev.deviation_id} opened ({dev.classification}): {dev.title}")


@deviation.command(name="list")
@db_option
@click.option("--status", type=click.Choice(("open", "closed")), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@plain_errors
def list_command(db_url: str, status: str | None, as_json: bool) -> None:
    """Deviations with classification, status, CAPA progress and links."""
    with open_store(db_url) as store:
        found = [d for d in DeviationDesk(store, Directory(store)).all().values()]
    found = [d for d in found if status is None or d.status == status]
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
        return
    if not found:
        click.echo("no deviations")
        return
    rows = [
        (
            d.deviation_id,
            d.classification,
            d.status,
            d.title[:40],
            ",".join(d.links["batches"] + d.links["lots"]) or "-",
            f"{sum(c.status != 'open' for c in d.capas.values())}/{len(d.capas)}",
        )
        for d in found
    ]
    click.echo(table(("ID", "CLASS", "STATUS", "TITLE", "LINKS", "CAPA DONE"), rows))


@deviation.command(name="show")
@db_option
@click.argument("deviation_id")
@click.option("--json", "as_json", is_flag=True, help="Print the deviation as JSON.")
@plain_errors
def show_command(db_url: str, deviation_id: str, as_json: bool) -> None:
    """One deviation: fields, links, CAPA, history and closure signature."""
    with open_store(db_url) as store:
        dev = DeviationDesk(store, Directory(store)).get(deviation_id)
    if as_json:
        click.echo(json.dumps(dev.to_dict(), indent=2))
        return
    _print(dev)


def _print(dev: Deviation) -> None:
    click.echo(f"{dev.deviation_id}  [{dev.status}]  {dev.classification}  {dev.title}")
    click.echo(f"  opened {dev.opened_at} by {dev.opened_by} ({dev.source})")
    click.echo(f"  description: {dev.description}")
    click.echo(f"  impact: {dev.impact or '-'}")
    click.echo(f"  root cause: {dev.root_cause or '-'}")
    for key, values in dev.links.items():
        click.echo(f"  {key}: {', '.join(values) or '-'}")
    for capa in dev.capas.values():
        click.echo(
            f"  {capa.capa_id}  [{capa.status}] {capa.action} (owner {capa.owner}, due {capa.due})"
        )
    for item in dev.history:
        click.echo(
            f"  {item['ts']}  {item['kind']} by {item.get('user')}: {item.get('reason', '')}"
        )
    if dev.closure is not None:
        mark = "" if dev.closure.valid else f" INVALID: {dev.closure.problem}"
        data = dev.closure.data
        click.echo(
            f"  closed {dev.closed_at}: {data.get('printed_name')} ({data.get('username')}) "
            f"{data.get('meaning')}{mark}"
        )


@deviation.command(name="update")
@db_option
@click.argument("deviation_id")
@click.option("--classification", type=click.Choice(CLASSIFICATIONS), default=None)
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--impact", default=None, help="Impact assessment.")
@click.option("--root-cause", "root_cause", default=None, help="Root cause.")
@_with_links
@click.option(
    "--add-capa", "capa_action", default=None, help="Add a CAPA action (needs --owner, --due)."
)
@click.option("--owner", default=None, help="Owner of the CAPA action added.")
@click.option("--due", default=None, help="Due date of the CAPA action added (YYYY-MM-DD).")
@click.option("--capa", "capa_id", default=None, help="A CAPA action to move (with --capa-status).")
@click.option("--capa-status", type=click.Choice(CAPA_STATES), default=None)
@click.option("--reason", default="", help="Why (journaled; required for field changes).")
@user_option
@plain_errors
def update_command(
    db_url: str,
    deviation_id: str,
    classification: str | None,
    title: str | None,
    description: str | None,
    impact: str | None,
    root_cause: str | None,
    batches: tuple[str, ...],
    lots: tuple[str, ...],
    exceptions: tuple[str, ...],
    capa_action: str | None,
    owner: str | None,
    due: str | None,
    capa_id: str | None,
    capa_status: str | None,
    reason: str,
    username: str,
) -> None:
    """Change fields and links, add a CAPA action, or move a CAPA action's status."""
    given = {
        "classification": classification,
        "title": title,
        "description": description,
        "impact": impact,
        "root_cause": root_cause,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    links = _links(batches, lots, exceptions)
    if capa_action is not None and (not owner or not due):
        raise click.UsageError("--add-capa needs --owner and --due")
    if (capa_id is None) != (capa_status is None):
        raise click.UsageError("--capa and --capa-status go together")
    if not changes and not any(links.values()) and capa_action is None and capa_id is None:
        raise click.UsageError("nothing to update")
    with open_store(db_url) as store:
        desk = DeviationDesk(store, Directory(store))
        password = password_of(username)
        if changes or any(links.values()):
            desk.update(
                username, password, deviation_id, reason=reason, changes=changes, add_links=links
            )
        if capa_action is not None:
            assert owner and due
            capa = desk.add_capa(
                username, password, deviation_id, action=capa_action, owner=owner, due=due
            )
            click.echo(f"{capa.capa_id} added")
        if capa_id is not None and capa_status is not None:
            desk.set_capa(
                username, password, deviation_id, capa_id, status=capa_status, comment=reason
            )
            click.echo(f"{capa_id} {capa_status}")
        _print(desk.get(deviation_id))


@deviation.command(name="close")
@db_option
@click.argument("deviation_id")
@click.option("--comment", required=True, help="QA's closing comment.")
@user_option
@plain_errors
def close_command(db_url: str, deviation_id: str, comment: str, username: str) -> None:
    """QA closes the deviation with a signature; refused while any CAPA is open."""
    with open_store(db_url) as store:
        desk = DeviationDesk(store, Directory(store))
        signature = desk.close(username, password_of(username), deviation_id, comment)
    click.echo(f"{deviation_id} closed: {signature.line()}")
