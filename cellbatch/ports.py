"""Simulator addresses that never collide: every server of a plant file on a free port.

``cellbatch demo`` (always, unless ``--plant-ports``) and ``cellbatch sim serve --free-ports``
start the plant's simulators from copies of their specs in which every TCP port is 0 (the
operating system picks a free one) and no fixed symlink is made for a pty. The plant's
units still name the addresses written in the plant file; the caller maps those to the
endpoints really bound (``Plant.with_endpoints``), so two runs on one machine never meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
