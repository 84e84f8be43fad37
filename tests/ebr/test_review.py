"""Review by exception: every rule on a batch that triggers it and on a clean one,
evidence, stable IDs, and the review read from the store on both backends."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ebr import (
    Journal,
    Store,
    StoreError,
    UnknownBatchError,
    read_batch,
    read_journal,
    read_samples,
)
from ebr.record.canonical import canonical_json
from ebr.record.model import BatchHeader, BatchRecord, Entry
from ebr.record.query import batch_record, journal_entries
from ebr.review import samples as review_samples
from ebr.review.exceptions import (
    ReviewException,
    Rules,
    load_rules,
    review,
    review_batch,
    review_connection,
    review_rows,
)
from ebr.review.rules import SETTINGS, parse_rules
from ebr.review.samples import _decode as review_samples_decode
from ebr.review.samples import scan
from ebr.review.view import BatchView
from recipes import load_recipe
from tests.ebr.conftest import SESSION_TOKEN, pg_schema_url
from tests.ebr.review_batches import CONTENT, PH, TEMP, TRIGGERS, all_scripts, iso, write

EXPECTED = {
    "excursion": ["excursion-18.2", "excursion-19.2"],
    "alarm": ["alarm-18", "alarm-21"],
    "interruption": ["interruption-19", "interruption-26"],
    "parameter": ["parameter-1.equilibration_time", "parameter-1.feed_volume"],
    "override": ["override-18", "override-19"],
    "manual_entry": ["manual_entry-19"],
    "comm_loss": ["comm_loss-18", "comm_loss-20.2"],
    "step_duration": ["step_duration-19", "step_duration-20"],
    "signature": ["signature-18", "signature-21"],
    "identity": ["identity-18"],
    "comment": ["comment-19"],
    "simulation": ["simulation-1"],
    "process_fault": ["process_fault-19", "process_fault-20", "process_fault-21"],
    "refused_command": ["refused_command-18"],
    "qc_result": ["qc_result-24"],
    "correction": ["correction-26"],
    "acceptance": ["acceptance-18"],
    "cross_check": ["cross_check-20.viable_density"],
    "hold_time": ["hold_time-17.equilibrated_to_culture"],
    "out_of_trend": [],  # this store has no 25-batch baseline: tests/ebr/test_trend_review.py
}
"""The IDs each rule gives on its trigger batch (seqs as tests/ebr/review_batches writes)."""

LIBRARY = Path(__file__).parents[2] / "recipes" / "library"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reviewed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One store holding every test batch, written once for this module per backend
    (PostgreSQL in its own schema, when CELLBATCH_TEST_PG is set)."""
    schema = None
    if request.param == "postgresql":
        admin = request.getfixturevalue("pg_admin")  # skips without CELLBATCH_TEST_PG
        schema = f"{SESSION_TOKEN}_review"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = Store.open(pg_schema_url(schema))
    else:
        store = Store.open(tmp_path_factory.mktemp("review") / "ebr.sqlite")

    async def build() -> None:
        for script in all_scripts().values():
            await write(store, script)

    try:
        asyncio.run(build())
        yield store
    finally:
        store.close()
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def _ids(found: list[ReviewException], rule: str | None = None) -> list[str]:
    return [e.id for e in found if rule is None or e.rule == rule]


def test_every_rule_has_a_trigger_batch() -> None:
    assert set(TRIGGERS) == set(SETTINGS) == set(EXPECTED)


def test_harvest_by_fallback_and_typed_count_off_online_are_exceptions(
    reviewed: Store, rules: Rules
) -> None:
    (fallback,) = [e for e in review(reviewed, "TRIG-acceptance", rules) if e.rule == "acceptance"]
    assert "ended by its fallback (elapsed >= 1 d)" in fallback.title
    assert "culture.viable_density = 4200000" in fallback.detail
    assert not _ids(review(reviewed, "HARVEST-MET", rules), "acceptance")
    (count,) = [e for e in review(reviewed, "TRIG-cross_check", rules) if e.rule == "cross_check"]
    assert "typed viable_density 2.1e+06 vs online" in count.title and "+91 %" in count.title
    assert not _ids(review(reviewed, "COUNT-AGREES", rules), "cross_check")
    site = parse_rules("site.toml", "[cross_check]\ntolerance_pct = 100\n")
    assert not _ids(review(reviewed, "TRIG-cross_check", site), "cross_check")


def test_a_hold_time_limit_exceeded_between_named_steps_is_an_exception(
    reviewed: Store, rules: Rules
) -> None:
    (over,) = [e for e in review(reviewed, "TRIG-hold_time", rules) if e.rule == "hold_time"]
    assert over.title == (
        "hold time equilibrated_to_culture: 22 min from the end of expansion/setup/equilibrate"
        " to the start of expansion/day_0/culture (limit 15 min)"
    )
    assert over.evidence.facts["elapsed_s"] == 22 * 60
    assert not _ids(review(reviewed, "HOLD-WITHIN", rules), "hold_time")
    site = parse_rules("site.toml", "[hold_time]\nmargin_s = 600\n")
    assert not _ids(review(reviewed, "TRIG-hold_time", site), "hold_time")


def test_the_recipe_names_the_fallback_branch_of_an_acceptance_criterion(
    reviewed: Store, rules: Rules
) -> None:
    # `until: density >= 1e7 or volume.pv >= 2000` with `fallback: volume.pv` in the recipe:
    # ended by the volume with the density short is an exception, by the density it is not.
    (ended,) = [
        e for e in review(reviewed, "HARVEST-DECLARED-FALLBACK", rules) if e.rule == "acceptance"
    ]
    assert ended.title == (
        "qc/count/wait: ended by its fallback (volume.pv >= 2000), criterion not met"
    )
    assert "culture.viable_density = 4200000 (criterion culture.viable_density >= 1e+07)" in (
        ended.detail
    )
    assert not _ids(review(reviewed, "HARVEST-DECLARED-MET", rules), "acceptance")
    # Without the declaration the rules file's fallback_tags (elapsed) apply: no fallback.
    assert not _ids(review(reviewed, "HARVEST-UNDECLARED", rules), "acceptance")
    # The recipe's declaration wins over a site's fallback_tags.
    site = parse_rules("site.toml", '[acceptance]\nfallback_tags = ["culture.viable_density"]\n')
    assert _ids(review(reviewed, "HARVEST-DECLARED-FALLBACK", site), "acceptance")


def test_a_clean_batch_has_no_exceptions(reviewed: Store, rules: Rules) -> None:
    # Its warm-up samples lie below the limits before the monitors were active.
    assert review(reviewed, "CLEAN", rules) == []


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_each_rule_flags_its_batch_and_only_there(reviewed: Store, rules: Rules, rule: str) -> None:
    found = review(reviewed, f"TRIG-{rule}", rules)
    assert _ids(found, rule) == EXPECTED[rule]
    for e in found:
        assert e.category == rules.rule(e.rule).category
        assert e.title and "\n" not in e.title
        assert e.evidence.seqs[0] == int(e.id.split("-")[-1].split(".")[0])
        json.dumps(e.to_dict())
    off = parse_rules("site.toml", f"[{rule}]\nenabled = false\n")
    assert _ids(review(reviewed, f"TRIG-{rule}", off), rule) == []


def test_excursion_evidence_names_the_window(reviewed: Store, rules: Rules) -> None:
    temp, ph = review(reviewed, "TRIG-excursion", rules)
    window = temp.evidence.window
    assert window is not None
    assert (window.tag, window.peak, window.limit, window.limit_name) == (
        "bioreactor.temperature.pv", 37.9, 37.5, "alert high",
    )  # fmt: skip
    assert (window.start, window.end, window.returned) == (
        "2026-03-01T11:30:00.000000Z", "2026-03-01T11:50:00.000000Z",
        "2026-03-01T12:00:00.000000Z",
    )  # fmt: skip
    assert (window.duration_s, window.samples, temp.severity) == (1800.0, 3, "major")
    assert ph.severity == "critical" and ph.evidence.facts["action"] is True
    assert "action limit 7.6" in ph.title


def test_comm_loss_reports_the_links_duration(reviewed: Store, rules: Rules) -> None:
    (lost,) = [f for f in review(reviewed, "TRIG-comm_loss", rules) if f.rule == "comm_loss"][:1]
    assert lost.title == "instrument BR-01 lost for 32.5 min"
    assert "link down since" in lost.detail


def test_thresholds_come_from_the_site_file(reviewed: Store) -> None:
    longer = parse_rules("site.toml", "[excursion]\nmin_duration_s = 3600\n")
    assert _ids(review(reviewed, "TRIG-excursion", longer)) == ["excursion-19.2"]  # action
    strict = parse_rules("site.toml", "[excursion]\nmin_duration_s = 3600\naction_always = false\n")
    assert review(reviewed, "TRIG-excursion", strict) == []
    small = parse_rules("site.toml", "[excursion]\nmin_excess = 0.35\naction_always = false\n")
    assert _ids(review(reviewed, "TRIG-excursion", small)) == ["excursion-18.2"]
    comm = parse_rules("site.toml", "[comm_loss]\nmin_duration_s = 1900\n")
    assert _ids(review(reviewed, "TRIG-comm_loss", comm)) == ["comm_loss-18"]  # 32 min > 30
    few = parse_rules("site.toml", "[comm_loss]\nmin_bad_samples = 4\n")
    assert _ids(review(reviewed, "TRIG-comm_loss", few)) == ["comm_loss-18"]
    slack = parse_rules("site.toml", "[step_duration]\noverrun_factor = 2\n")
    assert _ids(review(reviewed, "TRIG-step_duration", slack)) == ["step_duration-20"]


def test_severity_is_configurable_and_ids_do_not_depend_on_it(reviewed: Store) -> None:
    site = parse_rules("site.toml", '[alarm]\nseverity = "minor"\naction_severity = "major"\n')
    found = review(reviewed, "TRIG-alarm", site)
    assert [(e.id, e.severity) for e in found] == [("alarm-18", "major"), ("alarm-21", "minor")]


def test_alarm_evidence_links_clear_and_acknowledgement(reviewed: Store, rules: Rules) -> None:
    action, alert = review(reviewed, "TRIG-alarm", rules)
    assert action.evidence.seqs == (18, 19, 20)
    assert "acknowledged by b.jones" in action.detail and "cleared" in action.detail
    assert alert.evidence.seqs == (21,) and "not cleared" in alert.detail


def test_held_time_does_not_make_a_step_late(reviewed: Store, rules: Rules) -> None:
    assert _ids(review(reviewed, "HELD-NOT-LATE", rules)) == ["interruption-19"]
    counted = parse_rules("site.toml", "[step_duration]\ncount_held_time = true\n")
    assert _ids(review(reviewed, "HELD-NOT-LATE", counted)) == ["interruption-19"]


def test_hold_names_who_why_and_how_long(reviewed: Store, rules: Rules) -> None:
    hold = review(reviewed, "TRIG-interruption", rules)[0]
    assert hold.title == "batch hold by b.jones"
    assert "bag leak check" in hold.detail and "held 1 h" in hold.detail
    assert hold.evidence.facts["held_s"] == 3600.0


def test_a_verification_signature_counts_as_verification(reviewed: Store, rules: Rules) -> None:
    found = review(reviewed, "VERIFIED-BY-SIGNATURE", rules)
    assert _ids(found) == ["manual_entry-19"]
    assert "verified by b.jones" in found[0].detail and 20 in found[0].evidence.seqs


def test_failed_release_signatures_are_not_manufacturing_exceptions(
    reviewed: Store, rules: Rules
) -> None:
    titles = [e.title for e in review(reviewed, "TRIG-signature", rules) if e.rule == "signature"]
    assert not any("released" in t for t in titles)
    every = parse_rules("site.toml", '[signature]\nfailed_meanings = ["verified", "released"]\n')
    assert len(_ids(review(reviewed, "TRIG-signature", every), "signature")) == 3


def test_simulated_answers_in_a_gmp_batch(reviewed: Store, rules: Rules) -> None:
    found = review(reviewed, "SIMULATED-ANSWER", rules)
    assert [(e.id, e.severity) for e in found] == [("simulation-19", "critical")]


def test_review_is_deterministic(reviewed: Store, rules: Rules) -> None:
    first = [e.to_dict() for e in review(reviewed, "TRIG-signature", rules)]
    again = [e.to_dict() for e in review(reviewed, "TRIG-signature", load_rules())]
    assert first == again


def test_rules_digest_names_the_settings() -> None:
    assert load_rules().digest == load_rules().digest
    assert parse_rules("s.toml", "[alarm]\nseverity = 'minor'\n").digest != load_rules().digest


async def test_review_from_the_store_on_both_backends(store: Store) -> None:
    scripts = all_scripts()
    for name in ("TRIG-excursion", "TRIG-signature"):
        await write(store, scripts[name])
    rules = load_rules()
    for name in ("TRIG-excursion", "TRIG-signature"):
        from_store = review(store, name, rules)
        pure = review_batch(
            read_batch(store, name), read_journal(store, name), read_samples(store, name), rules
        )
        assert from_store == pure
    assert _ids(review(store, "TRIG-excursion", rules)) == EXPECTED["excursion"]
    with pytest.raises(UnknownBatchError):
        review(store, "NO-SUCH-BATCH", rules)

    # Appending later entries (a verification, a disposition) never renames an exception:
    # the missing verification is resolved, everything else keeps its ID.
    before = _ids(review(store, "TRIG-signature", rules))
    journal = Journal(store)
    await journal.start()
    try:
        await journal.resume_batch("TRIG-signature")
        await journal.append(
            "TRIG-signature", "signature",
            {"signature_id": "SIG-9", "user_id": "U-0003", "username": "b.jones",
             "printed_name": "Bob Jones", "meaning": "verified", "comment": "late",
             "signed_hash": "0" * 64, "subject": {"batch_id": "TRIG-signature", "seq": 21}},
        )  # fmt: skip
        await journal.append(
            "TRIG-signature", "exception.disposition",
            {"exception": "signature-18", "comment": "typo in password", "user": "q.a"},
        )  # fmt: skip
    finally:
        await journal.stop()
    after = _ids(review(store, "TRIG-signature", rules))
    assert before == ["signature-18", "manual_entry-21", "signature-21"]
    assert after == ["signature-18", "manual_entry-21"]


@pytest.mark.parametrize("name", ["car-t-expansion", "cell-wash-formulate", "cryopreserve"])
def test_library_recipes_are_understood(name: str) -> None:
    """Monitors, phase paths (parallel branches too) and durations as the session journals
    the recipe content (`recipe.document()`)."""
    recipe = load_recipe(LIBRARY / f"{name}.yaml")
    params = {
        p: {"value": spec.value, "master": spec.value, "unit": spec.unit}
        for p, spec in recipe.formula.items()
    }
    created = {"recipe": {"content": recipe.document()}, "parameters": params}
    header = BatchHeader("B", "r", "1", "0" * 64, "p", "c", True)
    view = BatchView(
        BatchRecord(header, "", 1, ""), [Entry("B", 1, "", "batch.created", created, "", "")]
    )
    assert list(view.phases) == [path for path, *_ in recipe.procedure.walk()]
    assert [m.name for m in view.monitors] == [m.name for m in recipe.monitors]
    for path, _up, _op, phase in recipe.procedure.walk():
        if phase.type == "hold_for":
            expected = recipe.resolve(phase.args["duration"])
            assert view.duration_s(view.phases[path]["duration"]) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(12))
def test_sample_runs_do_not_depend_on_block_boundaries(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block-wise scan (C-level fast path for quiet blocks) finds the same excursions
    and bad-quality runs however the rows are split into blocks."""
    rng = random.Random(seed)
    header = BatchHeader("B", "r", "1", "0" * 64, "p", "c", False)
    created = {"recipe": {"content": CONTENT}}
    active = {"t": iso(50), "monitors": ["temperature", "ph"], "since": iso(50)}
    entries = [
        Entry("B", 1, "", "batch.created", created, "", ""),
        Entry("B", 2, "", "monitors.active", active, "", ""),
    ]
    rows: list[list[Any]] = []
    for i in range(400):
        for tag, base in ((TEMP, 37.0), (PH, 7.2)):
            value: float | None = base + rng.choice([0.0, 0.1, -0.1, 0.45, 0.6, -0.6, 1.2])
            quality = rng.choices(["good", "bad", "uncertain"], [0.95, 0.03, 0.02])[0]
            if quality == "bad":
                value = None
            if rng.random() < 0.9 and abs((value or base) - base) > 0.4:
                value = base  # mostly quiet, so many blocks take the fast path
            rows.append([tag, iso(i * 5), value, "u", quality])
    cuts = sorted(rng.sample(range(1, len(rows)), 25))
    blocks = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    stored = entries + [
        Entry("B", 3 + i, "", "samples.block", {"block_no": i + 1, "count": len(b)}, "", "")
        for i, b in enumerate(blocks)
    ]
    view = BatchView(BatchRecord(header, "", len(stored), ""), entries)
    whole = scan(view, [rows], excursions=True, bad_quality=True)
    assert scan(view, blocks, excursions=True, bad_quality=True) == whole
    assert scan(view, [[r] for r in rows], excursions=True, bad_quality=True) == whole
    assert whole[0] and whole[1]
    # As stored: canonical JSON texts, quiet ones settled without decoding them.
    view = BatchView(BatchRecord(header, "", len(stored), ""), stored)
    texts = [canonical_json({"rows": b}) for b in blocks]
    decoded: list[int] = []

    def decode(text: str, number: int) -> list[Any]:
        decoded.append(number)
        return review_samples_decode(text, number)

    monkeypatch.setattr(review_samples, "_decode", decode)
    assert scan(view, texts, excursions=True, bad_quality=True) == whole
    assert 0 < len(decoded) < len(blocks)


def test_a_gmp_verification_needs_an_e_signature(reviewed: Store, rules: Rules) -> None:
    found = review(reviewed, "TRIG-manual_entry", rules)  # verifier named, nothing signed
    assert _ids(found) == ["manual_entry-19", "signature-19"]
    assert "name only, no e-signature" in found[0].detail
    assert "b.jones is named without an e-signature" in found[1].detail
    names = parse_rules("site.toml", "[signature]\nverification_needs_signature = false\n")
    assert _ids(review(reviewed, "TRIG-manual_entry", names)) == ["manual_entry-19"]


async def test_an_unreadable_sample_block_is_a_store_error(
    store: Store, shell: Callable[..., list[Any]]
) -> None:
    await write(store, all_scripts()["CLEAN"])
    shell("UPDATE sample_blocks SET data = '{\"rows\": [' WHERE block_no = 2")
    with pytest.raises(StoreError, match=r"^sample block 2 of batch CLEAN is unreadable; run"):
        review(store, "CLEAN")
    with store.snapshot() as conn:  # a caller's own snapshot
        batch = batch_record(conn, "CLEAN")
        entries = journal_entries(conn, "CLEAN")
        with pytest.raises(StoreError, match="sample block 2 of batch CLEAN"):
            review_connection(conn, batch, entries)


def test_an_abort_is_critical_and_names_who_and_why(reviewed: Store, rules: Rules) -> None:
    (abort,) = review(reviewed, "ABORTED", rules)
    assert (abort.id, abort.severity, abort.title) == (
        "interruption-19",
        "critical",
        "batch abort by s.visor",
    )
    assert "contamination suspected" in abort.detail and abort.evidence.seqs == (19, 18)


def test_a_flapping_cpp_is_one_episode(reviewed: Store, rules: Rules) -> None:
    found = review(reviewed, "FLAPPING", rules)
    assert [e.rule for e in found] == ["alarm", "excursion"]
    alarm, excursion = found
    assert alarm.title.startswith("alert alarm temperature raised 5 times")
    assert len(alarm.evidence.seqs) == 10 and alarm.evidence.facts["raised"] == 5
    window = excursion.evidence.window
    assert window is not None and excursion.evidence.facts["parts"] == 5
    assert (window.samples, window.duration_s, window.peak) == (5, 7800.0, 36.3)  # 200→330 min
    assert "5 sample(s) out of band in 5 excursions" in excursion.detail
    apart = parse_rules("site.toml", "[alarm]\nmerge_gap_s = 0\n[excursion]\nmerge_gap_s = 0\n")
    assert [e.rule for e in review(reviewed, "FLAPPING", apart)] == ["alarm"] * 5 + [
        "excursion"
    ] * 5


def test_answers_pair_with_the_prompt_opened_before_them(reviewed: Store, rules: Rules) -> None:
    found = review(reviewed, "RESUMED-PROMPTS", rules)
    assert [(e.rule, e.element) for e in found] == [
        ("manual_entry", "expansion/day_0/culture"),
        ("signature", "expansion/day_0/culture"),
    ]


def test_monitors_start_with_their_operation_when_the_record_does_not_say(rules: Rules) -> None:
    """A record without `monitors.active` entries: monitors watch from the first start of
    their `active_from` operation, so the warm-up before it is not an excursion."""
    header = BatchHeader("B", "r", "1", "0" * 64, "p", "c", False)
    running = {"element": "expansion/day_0", "to": "Running", "trigger": "start", "t": iso(140)}
    entries = [
        Entry("B", 1, "", "batch.created", {"recipe": {"content": CONTENT}}, "", ""),
        Entry("B", 2, "", "element.state", running, "", ""),
        Entry("B", 3, "", "samples.block", {"block_no": 1, "count": 6}, "", ""),
    ]
    values = [(100, 35.0), (130, 35.8), (150, 37.0), (160, 37.8), (170, 37.9), (180, 37.0)]
    rows = [[TEMP, iso(m), v, "degC", "good"] for m, v in values]
    found = review_rows(BatchRecord(header, "", 3, ""), entries, [rows], rules)
    assert [e.id for e in found] == ["excursion-3.4"]
    window = found[0].evidence.window
    assert window is not None and (window.start, window.peak) == (iso(160), 37.9)
