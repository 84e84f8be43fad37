"""`cellbatch batch watch`: a batch's changes as lines, until it ends.

Looks at the controller's ``Show`` answer every interval over one open connection and
prints what changed since the last look — state, hold/stop reason, active elements,
alarms raised, cleared and acknowledged, prompts opened and closed — each line with
the UTC time. When the controller cannot be reached it says so once, keeps trying
and says when it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cellbatch.batch_text import element_line, is_final, prompt_lines
from cellbatch.service_client import Connection, ServiceError
from controller.address_space import alarm_line
from controller.interface_security import Endpoint

Echo = Callable[[str], Any]


def changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What changed between two ``Show`` answers of one batch, as lines."""
    lines: list[str] = []
    old = before or {"state": None, "why": "", "elements": [], "alarm_list": []}
    if now["state"] != old["state"]:
        lines.append(f"state {now['state']}")
    if now.get("why") != old.get("why"):
        lines.append(f"why: {now['why']}" if now.get("why") else "reason cleared")
    was = {e["path"] for e in old["elements"]}
    verb = "started" if before is not None else "active"
    lines += [f"{verb} {element_line(e)}" for e in now["elements"] if e["path"] not in was]
    seen = {a["seq"]: a for a in old["alarm_list"]}
    for alarm in now["alarm_list"]:
        prior = seen.get(alarm["seq"])
        if prior is None:
            lines.append(f"ALARM {alarm_line(alarm)}")
        elif prior["active"] != alarm["active"] or (
            prior["acknowledged_by"] != alarm["acknowledged_by"]
        ):
            lines.append(f"alarm {alarm_line(alarm)}")
    asked = {p["id"] for p in (before or {}).get("prompt_forms", [])}
    open_now = {p["id"] for p in now["prompt_forms"]}
    for prompt in now["prompt_forms"]:
        if prompt["id"] not in asked:
            first, *rest = prompt_lines(prompt)
            lines += [f"PROMPT {first}", *rest]
    lines += [f"prompt {pid} closed" for pid in sorted(asked - open_now)]
    return lines


async def watch(endpoint: Endpoint | str, batch_id: str, interval: float, echo: Echo) -> int:
    """Print the batch's changes until it ends (0) or the controller does not know it (1);
    raises ServiceError when the controller cannot be reached at all."""
    before: dict[str, Any] | None = None
    lost = False
    while True:
        try:
            async with Connection(endpoint) as conn:
                if lost:
                    _say(echo, "controller reachable again")
                    lost = False
                while True:
                    now = await conn.call("Show", batch_id)
                    if not now.get("ok"):
                        _say(echo, f"refused: {now.get('message')}")
                        return 1
                    for line in changes(before, now):
                        _say(echo, line)
                    before = now
                    if is_final(now["state"]):
                        return 0
                    await asyncio.sleep(interval)
        except ServiceError as exc:
            if before is None:
                raise  # never reached it: a plain error, as every `batch` command
            if not lost:
                _say(echo, f"controller unreachable ({exc}); still trying")
                lost = True
            await asyncio.sleep(max(interval, 1.0))


def _say(echo: Echo, line: str) -> None:
    echo(f"{datetime.now(UTC):%H:%M:%S}Z  {line}")
