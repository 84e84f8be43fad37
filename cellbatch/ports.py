"""Simulator addresses that never collide: every server of a plant file on a free port.

``cellbatch demo`` (always, unless ``--plant-ports``) and ``cellbatch sim serve --free-ports``
start the plant's simulators from copies of their specs in which every TCP port is 0 (the
operating system picks a free one) and no fixed symlink is made for a pty. The plant's
units still name the addresses written in the plant file; the caller maps those to the
endpoints really bound (``Plant.with_endpoints``), so two runs on one machine never meet.

Across processes the map travels in an endpoints file: ``sim serve --free-ports
--endpoints FILE`` writes it (`write_endpoints`) and removes it when it stops;
``run`` and ``controller serve`` take ``--endpoints FILE`` (`at_endpoints`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from controller.plant import Plant, PlantError

endpoints_option = click.option(
    "--endpoints",
    "endpoints_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Endpoints file of `sim serve --free-ports --endpoints FILE`: the units talk to "
    "the simulators really bound.",
)
"""`run` and `controller serve`: where the plant's simulators really are."""

_TCP_SCHEMES = {"opc.tcp", "modbus+tcp"}
_PTY_SCHEMES = {"serial": None, "modbus+rtu": "modbus+rtu://"}
"""Pty listen schemes → what replaces a listen URL that names a symlink (None: drop the key)."""


def on_free_ports(specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``[[simulators]]`` specs that bind any free port and make no symlink."""
    moved = []
    for spec in specs:
        copy = dict(spec)
        listen = copy.get("listen")
        if isinstance(listen, str):
            parts = urlsplit(listen)
            if parts.scheme in _TCP_SCHEMES and parts.hostname:
                host = parts.hostname
                netloc = f"[{host}]:0" if ":" in host else f"{host}:0"
                copy["listen"] = urlunsplit(parts._replace(netloc=netloc))
            elif parts.scheme in _PTY_SCHEMES:
                replacement = _PTY_SCHEMES[parts.scheme]
                if replacement is None:
                    del copy["listen"]
                else:
                    copy["listen"] = replacement
        moved.append(copy)
    return moved


def endpoint_map(specs: Iterable[Mapping[str, Any]], bound: Mapping[str, str]) -> dict[str, str]:
    """Plant-file listen address → endpoint really bound, by simulator name."""
    return {
        str(spec["listen"]): bound[str(spec["name"])]
        for spec in specs
        if "listen" in spec and str(spec["name"]) in bound
    }


def write_endpoints(path: Path, plant: Plant, moved: Mapping[str, str]) -> None:
    """Write the endpoints file (JSON): plant-file address → endpoint really bound, with
    the plant file it is for; replaced whole, never seen half-written."""
    doc = {
        "plant": str(Path(plant.source).resolve()),
        "written": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endpoints": dict(moved),
    }
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def remove_endpoints(path: Path) -> None:
    """Remove an endpoints file (its simulators have stopped)."""
    path.unlink(missing_ok=True)


def at_endpoints(plant: Plant, path: str) -> Plant:
    """`plant` with its units moved to the endpoints an endpoints file names; PlantError
    (naming the file, with LINE:COL for JSON errors) when it is unreadable, malformed or
    names none of the plant's unit endpoints."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlantError(f"{path}: cannot read the endpoints file ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlantError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    moved = doc.get("endpoints") if isinstance(doc, dict) else None
    if not isinstance(moved, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in moved.items()
    ):
        raise PlantError(
            f'{path}:1:1: expected {{"endpoints": {{plant-file address: bound URL}}}} '
            "(written by `cellbatch sim serve --free-ports --endpoints FILE`)"
        )
    if not {u.endpoint for u in plant.units} & set(moved):
        written_for = doc.get("plant") or "another plant"
        raise PlantError(
            f"{path}: none of its addresses is a unit endpoint of {plant.source} "
            f"(it was written for {written_for})"
        )
    return plant.with_endpoints(moved)
