"""Operator prompts: answered through one board, validated, verified by a second
person, journaled; a chain-of-identity mismatch is a hard stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controller.batch import BatchRun, ControlRecipe
from controller.clock import ScaledClock
from controller.isa88 import Command, State
from controller.prompts import PromptBoard, PromptError, answers_from, simulated_operator
from controller.recorder import BatchRecorder
from drivers import DevicePool
from ebr import Journal, Store, read_journal
from recipes import load_recipe

RECIPE = load_recipe(Path(__file__).parent / "recipes" / "prompts.yaml")


async def _batch(tmp_path: Path, board: PromptBoard) -> tuple[BatchRun, Journal, Store, DevicePool]:
    store = Store.open(f"sqlite:///{tmp_path / 'prompts.sqlite'}")
    journal = Journal(store)
    await journal.start()
    pool = DevicePool()
    device = pool.open(
        "V", "rocking_bioreactor_opcua", "opc.tcp://127.0.0.1:9/none", {"vessel": "V"}
    )
    clock = ScaledClock(1000.0)
    control = ControlRecipe("B-P", RECIPE, {}, {"bioreactor": device}, "COI-42", True)
    await journal.open_batch(
        "B-P",
        recipe_name="prompts",
        recipe_version="0.1.0",
        recipe_hash=RECIPE.content_hash,
        product="Test",
        coi="COI-42",
        simulation=True,
        data={},
    )
    run = BatchRun(control, BatchRecorder(journal, "B-P", clock), clock, prompts=board)
    return run, journal, store, pool


async def _close(journal: Journal, store: Store, pool: DevicePool) -> list[Any]:
    await journal.stop()
    await pool.close()
    entries = read_journal(store, "B-P")
    store.close()
    return entries


async def test_simulated_operator_answers_every_prompt(tmp_path: Path) -> None:
    board = PromptBoard()
    board.answerer = simulated_operator(board)
    run, journal, store, pool = await _batch(tmp_path, board)
    assert await asyncio.wait_for(run.run(), 10) is State.COMPLETE
    entries = await _close(journal, store, pool)
    answered = [e.data for e in entries if e.kind == "prompt.answered"]
    assert [a["element"] for a in answered] == [
        "bench/receive/confirm_bag",
        "bench/receive/scan",
        "bench/count/cell_count",
    ]
    assert all(a["simulated"] and a["user"] == "simulated-operator" for a in answered)
    assert answered[1]["values"] == {"scan": "COI-42"}
    assert answered[2]["values"] == {"viable_density": 2.0e6, "viability": 90.0}
    assert answered[2]["verifier"] == "simulated-verifier"
    opened = [e for e in entries if e.kind == "prompt.opened"]
    assert all(
        o.seq < a.seq
        for o, a in zip(opened, [e for e in entries if e.kind == "prompt.answered"], strict=True)
    )
    assert any(e.kind == "identity.confirmed" for e in entries)


async def test_answers_are_validated_and_verified_by_someone_else(tmp_path: Path) -> None:
    board = PromptBoard()
    run, journal, store, pool = await _batch(tmp_path, board)
    task = asyncio.create_task(run.run())

    async def next_prompt(after: str | None = None) -> str:
        while not board.open or after in board.open:
            board.changed.clear()
            await asyncio.wait_for(board.changed.wait(), 5)
        return next(iter(board.open))

    first = await next_prompt()
    with pytest.raises(PromptError, match="missing entries done"):
        await board.answer(first, {}, user="op1")
    await board.answer(first, {"done": "done"}, user="op1")
    scan = await next_prompt(after=first)
    await board.answer(scan, {"scan": "COI-42"}, user="op1")
    count = await next_prompt(after=scan)
    values = {"viable_density": 2.5e6, "viability": 93}
    with pytest.raises(PromptError, match="above the maximum"):
        await board.answer(count, {**values, "viability": 130}, user="op1", verifier="qa2")
    with pytest.raises(PromptError, match="needs a second person"):
        await board.answer(count, values, user="op1")
    with pytest.raises(PromptError, match="different person"):
        await board.answer(count, values, user="op1", verifier="op1")
    await board.answer(count, values, user="op1", verifier="op2")
    assert await asyncio.wait_for(task, 10) is State.COMPLETE
    entries = await _close(journal, store, pool)
    answered = [e.data for e in entries if e.kind == "prompt.answered"]
    assert answered[-1]["verifier"] == "op2" and answered[-1]["values"]["viability"] == 93.0


async def test_identity_mismatch_holds_the_batch(tmp_path: Path) -> None:
    board = PromptBoard()
    answers = {
        "confirm_bag": {"done": "done", "user": "op1"},
        "scan": {"scan": "COI-41", "user": "op1"},
    }
    board.answerer = answers_from(board, answers, "answers.yaml")
    run, journal, store, pool = await _batch(tmp_path, board)
    task = asyncio.create_task(run.run())
    while run.state is not State.HELD:
        run.state_changed.clear()
        await asyncio.wait_for(run.state_changed.wait(), 5)
    assert run.chain[-1].path == "bench/receive/scan"
    assert await run.command(Command.ABORT, user="sup1", reason="test")
    assert await asyncio.wait_for(task, 5) is State.ABORTED
    entries = await _close(journal, store, pool)
    mismatch = [e.data for e in entries if e.kind == "identity.mismatch"]
    assert mismatch == [{**mismatch[0], "scanned": "COI-41", "expected": "COI-42"}]
    failed = [e.data for e in entries if e.kind == "phase.failed"]
    assert "chain of identity mismatch" in failed[0]["error"]


async def test_a_held_prompt_is_withdrawn_and_asked_again(tmp_path: Path) -> None:
    board = PromptBoard()
    run, journal, store, pool = await _batch(tmp_path, board)
    task = asyncio.create_task(run.run())
    while not board.open:
        board.changed.clear()
        await asyncio.wait_for(board.changed.wait(), 5)
    assert await run.command(Command.HOLD, user="op1", reason="test")
    assert not board.open
    board.answerer = simulated_operator(board)
    assert await run.command(Command.RESTART, user="op1", reason="test")
    assert await asyncio.wait_for(task, 10) is State.COMPLETE
    entries = await _close(journal, store, pool)
    kinds = [e.kind for e in entries if e.kind.startswith("prompt.")]
    assert kinds[:3] == ["prompt.opened", "prompt.withdrawn", "prompt.opened"], kinds


async def test_gmp_answers_are_signed_by_two_authenticated_people(tmp_path: Path) -> None:
    """R14: the board refuses unsigned answers, the same account twice, an admin or an
    operator without the role; signatures follow the answer and bind to its content."""
    from argon2 import PasswordHasher

    from controller.prompts import SignedBy
    from ebr.people.signatures import entry_content
    from ebr.people.users import Directory

    board = PromptBoard(require_signatures=True)
    run, journal, store, pool = await _batch(tmp_path, board)
    people = Directory(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    people.init("admin", "Admin", "site-key-2026")
    admin = people.authenticate("admin", "site-key-2026", "test")
    for name in ("olga", "vera"):
        people.add(admin, name, name.title(), ["operator"], "temporary-pw-9")
    people.add(admin, "quinn", "Quinn", ["qa"], "temporary-pw-9")
    olga, vera, quinn = people.get("olga"), people.get("vera"), people.get("quinn")
    assert olga is not None and vera is not None and quinn is not None
    task = asyncio.create_task(run.run())

    async def next_prompt(after: str | None = None) -> str:
        while not board.open or after in board.open:
            board.changed.clear()
            await asyncio.wait_for(board.changed.wait(), 5)
        return next(iter(board.open))

    first = await next_prompt()
    with pytest.raises(PromptError, match="must be signed"):
        await board.answer(first, {"done": "done"}, user="olga")
    with pytest.raises(PromptError, match="signed by vera, not olga"):
        await board.answer(first, {"done": "done"}, user="olga", signed_by=SignedBy(vera))
    with pytest.raises(PromptError, match="admin accounts cannot sign"):
        await board.answer(first, {"done": "done"}, user="admin", signed_by=SignedBy(admin))
    with pytest.raises(PromptError, match="SOD-ROLE"):  # QA reviews; it does not operate
        await board.answer(first, {"done": "done"}, user="quinn", signed_by=SignedBy(quinn))
    await board.answer(first, {"done": "done"}, user="olga", signed_by=SignedBy(olga))
    scan = await next_prompt(after=first)
    await board.answer(scan, {"scan": "COI-42"}, user="olga", signed_by=SignedBy(olga))
    count = await next_prompt(after=scan)
    values = {"viable_density": 2.5e6, "viability": 93}
    olga_twice = SignedBy(olga, olga)
    with pytest.raises(PromptError, match="different person"):
        await board.answer(count, values, user="olga", verifier="olga", signed_by=olga_twice)
    with pytest.raises(PromptError, match="verifier did not sign"):
        await board.answer(count, values, user="olga", verifier="vera", signed_by=SignedBy(olga))
    await board.answer(count, values, user="olga", verifier="vera", signed_by=SignedBy(olga, vera))
    assert await asyncio.wait_for(task, 10) is State.COMPLETE
    entries = await _close(journal, store, pool)
    by_seq = {e.seq: e for e in entries}
    signatures = [e for e in entries if e.kind == "signature"]
    assert [(s.data["username"], s.data["meaning"]) for s in signatures] == [
        ("olga", "performed"),
        ("olga", "performed"),
        ("olga", "performed"),
        ("vera", "verified"),
    ]
    from ebr.people.signatures import check_signature

    for signature in signatures:
        signed = by_seq[signature.data["subject"]["seq"]]
        assert signed.kind == "prompt.answered"
        assert check_signature(signature, entry_content(signed)).valid
    edited = entry_content(by_seq[signatures[-1].data["subject"]["seq"]])
    edited["data"] = {**edited["data"], "values": {**values, "viability": 99.0}}
    assert not check_signature(signatures[-1], edited).valid
