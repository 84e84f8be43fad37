"""The link: blip mask, failure timeout, capped exponential backoff (no sockets needed)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from drivers.errors import Disconnected, ProfileError
from drivers.link import ConnectionStatus, Link, LinkPolicy


async def test_blip_mask_failure_timeout_and_capped_backoff() -> None:
    policy = LinkPolicy(
        blip_s=0.1,
        fail_after_s=0.3,
        backoff_initial_s=0.02,
        backoff_max_s=0.08,
        attempt_timeout_s=0.5,
    )
    attempts: list[float] = []
    heal_at = [float("inf")]

    async def reconnect() -> None:
        attempts.append(time.monotonic())
        if time.monotonic() < heal_at[0]:
            raise Disconnected("still down")

    link = Link("test", policy, reconnect)
    seen: list[ConnectionStatus] = []
    link.watch(seen.append)
    assert link.status is ConnectionStatus.RECONNECTING  # never connected yet
    link.ok()
    assert link.status is ConnectionStatus.CONNECTED

    link.lost("gone")
    assert link.status is ConnectionStatus.CONNECTED  # inside the blip mask
    await asyncio.sleep(0.15)
    assert link.status is ConnectionStatus.RECONNECTING
    await asyncio.sleep(0.2)
    assert link.status is ConnectionStatus.FAILED
    heal_at[0] = time.monotonic() + 0.1
    deadline = time.monotonic() + 2.0
    while link.status is not ConnectionStatus.CONNECTED:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert seen == [
        ConnectionStatus.CONNECTED,
        ConnectionStatus.RECONNECTING,
        ConnectionStatus.FAILED,
        ConnectionStatus.CONNECTED,
    ]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] < gaps[2]  # doubling…
    assert max(gaps) < policy.backoff_max_s + 0.05  # …up to the cap
    assert link.recoveries == 1
    await link.close()


async def test_a_short_blip_never_changes_the_status() -> None:
    policy = LinkPolicy(blip_s=0.2, fail_after_s=0.4, backoff_initial_s=0.01)

    async def reconnect() -> None:
        return None

    link = Link("test", policy, reconnect)
    link.ok()
    seen: list[ConnectionStatus] = []
    link.watch(seen.append)
    link.lost("blip")
    await asyncio.sleep(0.25)  # past the mask: the reconnect came back long before
    assert link.status is ConnectionStatus.CONNECTED and seen == []
    assert link.attempts == 1
    await link.close()


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ProfileError, match="blip_s"):
        LinkPolicy(blip_s=0)
    with pytest.raises(ProfileError, match="fail_after_s"):
        LinkPolicy(blip_s=5, fail_after_s=1)
    with pytest.raises(ProfileError, match=r"profile 'x'.*backoff_max_s"):
        LinkPolicy().with_options({"reconnect_backoff_max_s": 0.01}, "profile 'x'")
