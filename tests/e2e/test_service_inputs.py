"""The controller's interface cannot be turned against the plant (issue 16): `Start`
names library recipes only (a path, a FIFO, a private key, a 10 MB document are refused
without the controller opening anything), and crafted payloads — wrong arity, wrong
types, deep or non-finite JSON, control characters — each get a typed refusal, no
traceback, while a batch keeps running; a refused start leaves no unit bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from click.testing import CliRunner

from cellbatch.cli import cli
from controller.service import NAMESPACE
from ebr import Store, read_samples
from recipes import load_recipe
from tests.e2e.test_service import SHORT, Serve, listed, wait_state
from tests.e2e.test_service import setup as setup

pytestmark = pytest.mark.e2e
TYPED = {"invalid_argument", "not_found", "unauthenticated", "refused"}
SECRET = "cellbatch-test-secret-4f1c2a"


def text(value: str) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.String)


async def raw_calls(endpoint: str, calls: list[tuple[str, list[ua.Variant]]]) -> list[Any]:
    """Each call's decoded answer, or the OPC UA status error it raised."""
    client = Client(endpoint, timeout=30)
    await client.connect()
    answers: list[Any] = []
    try:
        idx = await client.get_namespace_index(NAMESPACE)
        node = await client.nodes.objects.get_child([f"{idx}:Controller"])
        for method, args in calls:
            try:
                answers.append(json.loads(await node.call_method(f"{idx}:{method}", *args)))
            except ua.UaStatusCodeError as exc:
                answers.append(exc)
    finally:
        await client.disconnect()
    return answers


def payloads(tmp_path: Path, batch_id: str) -> list[tuple[str, list[ua.Variant]]]:
    key = tmp_path / "server-key.pem"
    key.write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")
    fifo = tmp_path / "recipe.fifo"
    os.mkfifo(fifo)
    start = [text("{}"), text(""), text("olga"), text("")]
    deep = "[" * 5000 + "]" * 5000
    nested = '{"a":' * 300 + "1" + "}" * 300
    good = load_recipe(SHORT).content_hash

    def start_with(ref: str, params: str = "{}", coi: str = "", user: str = "olga") -> Any:
        return ("Start", [text(ref), text(params), text(coi), text(user), text("")])

    return [
        start_with("/etc/passwd"),
        start_with(str(key)),
        start_with(str(fifo)),
        start_with("../../../etc/shadow"),
        start_with("x" * (10 * 1024 * 1024)),  # a 10 MB document
        start_with("short-culture@9.9.9"),
        start_with("0" * 64),
        start_with("short-culture\u202e"),
        start_with(""),
        start_with(good, "{"),
        start_with(good, "[1]"),
        start_with(good, '{"culture_time": NaN}'),
        start_with(good, '{"culture_time": Infinity}'),
        start_with(good, '{"culture_time": 1e400}'),
        start_with(good, '{"culture_time": "fast"}'),
        start_with(good, '{"culture_time": true}'),
        start_with(good, deep),
        start_with(good, nested),
        start_with(good, '{"culture_time": -5}'),
        start_with(good, "{}", user=""),
        ("Start", start),  # 4 arguments
        ("Start", [text(good), *start, text("extra")]),
        ("Start", [ua.Variant(5, ua.VariantType.Int64)] * 5),
        ("Start", [ua.Variant(None, ua.VariantType.Null)] * 5),
        ("SignIn", [ua.Variant(5, ua.VariantType.Int64), ua.Variant(5, ua.VariantType.Int64)]),
        ("SignIn", [text("olga")]),
        ("SignIn", [text(""), text("")]),
        ("Show", [ua.Variant(123, ua.VariantType.Int32)]),
        ("Show", [text("x" * 70_000)]),
        ("Show", [text("NO-SUCH")]),
        ("Command", [text(batch_id), text("explode"), text("olga"), text(""), text("")]),
        ("Command", [ua.Variant(1.5, ua.VariantType.Double)] * 5),
        ("Command", [text("NO-SUCH"), text("hold"), text("olga"), text(""), text("")]),
        ("Answer", [text("P-1"), text("{"), *[text("")] * 5]),
        ("Answer", [text("P-1"), text(deep), *[text("")] * 5]),
        ("Answer", [text("P-1")]),
        ("Acknowledge", [text(batch_id), text("one"), text("olga"), text(""), text("")]),
        ("Acknowledge", [text(batch_id), text("1e999"), text("olga"), text(""), text("")]),
        ("List", [text("extra")]),
        ("Info", [text("x"), text("y")]),
    ]


def test_crafted_requests_get_typed_refusals_while_a_batch_runs(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    plant, db, endpoint = setup
    serve = Serve(plant, db, endpoint, "--simulated-operator")
    stderr = ""
    try:
        at = ("--endpoint", endpoint, "--user", "olga")
        # Refused after its unit was bound (a COI the record cannot hold): nothing stays bound.
        bad_coi = asyncio.run(
            raw_calls(
                endpoint,
                [
                    (
                        "Start",
                        [
                            text("short-culture@0.1.0"),
                            text("{}"),
                            text("C\x07"),
                            text("olga"),
                            text(""),
                        ],
                    )
                ],
            )
        )[0]
        assert bad_coi["ok"] is False and bad_coi["error"] in TYPED, bad_coi
        runner = CliRunner()
        started = runner.invoke(
            cli, ["batch", "start", "short-culture@0.1.0", "--param", "culture_time=2880", *at]
        )
        assert started.exit_code == 0, started.output  # the only unit was free again
        batch_id = started.output.split()[-1]
        wait_state(endpoint, batch_id, {"Running"})
        calls = payloads(tmp_path, batch_id)
        answers = asyncio.run(raw_calls(endpoint, calls))
        counted = {"typed": 0, "status": 0}
        for (method, _args), answer in zip(calls, answers, strict=True):
            if isinstance(answer, ua.UaStatusCodeError):  # refused by the OPC UA stack itself
                assert "BadInternalError" not in str(answer), (method, answer)
                counted["status"] += 1
                continue
            assert answer["ok"] is False, (method, answer)
            assert answer["error"] in TYPED, (method, answer)
            assert SECRET not in answer["message"] and "root:" not in answer["message"]
            counted["typed"] += 1
        print(f"crafted requests: {len(calls)}, typed refusals {counted}")
        assert counted["typed"] >= 35, counted
        assert [b["id"] for b in listed(endpoint)] == [batch_id]
        assert wait_state(endpoint, batch_id, {"Running", "Complete"}) in {"Running", "Complete"}
        unsafe = CliRunner().invoke(cli, ["batch", "start", str(tmp_path / "recipe.fifo"), *at])
        assert unsafe.exit_code == 1 and "Traceback" not in unsafe.output
    finally:
        serve.end(signal.SIGTERM)
        assert serve.proc.stderr is not None
        stderr = serve.proc.stderr.read()
    assert "Traceback" not in stderr, stderr[-3000:]
    # Control never stalled: each CPP was recorded at its sampling period throughout.
    assert sampling_gaps(db, batch_id) <= 1.5 * SAMPLE_PERIOD_S


SAMPLE_PERIOD_S = 60.0
"""The short culture's monitors sample once a minute of process time."""


def sampling_gaps(db: Path, batch_id: str) -> float:
    """The longest process-time gap between two recorded samples of one CPP, in seconds."""
    with Store.open(f"sqlite:///{db}") as store:
        samples = read_samples(store, batch_id)
    last: dict[str, datetime] = {}
    longest = 0.0
    for sample in samples:
        at = datetime.fromisoformat(sample.time.replace("Z", "+00:00"))
        if sample.tag in last:
            longest = max(longest, (at - last[sample.tag]).total_seconds())
        last[sample.tag] = at
    assert last, "no samples recorded"
    return longest


def test_gmp_controller_refuses_to_listen_beyond_loopback_in_the_clear(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    plant, db, _endpoint = setup
    gmp = tmp_path / "gmp.toml"
    gmp.write_text(plant.read_text().replace('mode = "simulation"', 'mode = "gmp"'))
    result = CliRunner().invoke(
        cli,
        ["controller", "serve", "--plant", str(gmp), "--db", f"sqlite:///{db}",
         "--listen", "opc.tcp://0.0.0.0:4841"],
    )  # fmt: skip
    assert result.exit_code == 2 and "only with Sign&Encrypt" in result.output, result.output
