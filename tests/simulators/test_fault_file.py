"""Fault schedules: FILE:LINE errors, per-simulator checks, timing, and ``sim serve --faults``."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from simulators.fault_file import FaultFileError, check_schedule, load_fault_file, run_schedule
from simulators.faults import FaultBoard

WAIT_S = 15.0
CELLBATCH = str(Path(sys.executable).parent / "cellbatch")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[[fault]]\nsimulator = "a"\nkind = "stuck"\nat = -1\n', 4, "at must be"),
        ('[[fault]]\nsimulator = "a"\n', 1, "needs kind"),
        (
            '[[fault]]\nsimulator = "a"\nkind = "slow"\n\n[[fault]]\nkind = 3\n',
            5,
            "needs simulator",
        ),
        ('[[fault]]\nsimulator = "a"\nkind = "x"\nduration = 0\n', 4, "duration must be"),
        ('[[fault]]\nsimulator = "a"\nkind = \n', 3, "Invalid"),
        ("[faults]\nx = 1\n", 1, "unknown top-level keys faults"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FaultFileError) as info:
        load_fault_file(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert words in str(info.value)


def test_entries_are_checked_against_each_simulator(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[fault]]\nsimulator = "pump"\nkind = "silent"\n\n'
        '[[fault]]\nsimulator = "pump"\nkind = "refuse"\n',
    )
    schedule = load_fault_file(path)
    boards = {"pump": FaultBoard("pump", ["silent", "slow"])}
    with pytest.raises(FaultFileError, match=rf"^{path}:5: pump: cannot show 'refuse'"):
        check_schedule(schedule, boards)
    with pytest.raises(FaultFileError, match="no simulator 'pump'"):
        check_schedule(schedule, {})
    with pytest.raises(FaultFileError, match="missing parameter 'delay_s'"):
        check_schedule(
            load_fault_file(_write(tmp_path, '[[fault]]\nsimulator = "pump"\nkind = "slow"\n')),
            boards,
        )


async def test_schedule_injects_and_clears_on_time(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[fault]]\nsimulator = "pump"\nkind = "slow"\ndelay_s = 0.5\nat = 0.1\nduration = 0.2\n',
    )
    board = FaultBoard("pump", ["slow"])
    seen: list[tuple[float, bool]] = []
    t0 = time.monotonic()
    board.on_change(lambda: seen.append((time.monotonic() - t0, board.has("slow"))))
    await asyncio.wait_for(run_schedule(load_fault_file(path), {"pump": board}), 2.0)
    assert [on for _, on in seen] == [True, False]
    # Never early; lateness on a loaded machine is bounded by the 2 s wait above.
    assert seen[0][0] >= 0.09 and seen[1][0] - seen[0][0] >= 0.19


@pytest.mark.slow
async def test_sim_serve_runs_a_fault_file(tmp_path: Path) -> None:
    plant = tmp_path / "plant.toml"
    plant.write_text(
        '[plant]\nmode = "simulation"\n\n[[simulators]]\nname = "cp"\n'
        'kind = "modbus-cell-processor"\nlisten = "modbus+tcp://127.0.0.1:0"\n\n'
        '[[units]]\nname = "CP"\nclass = "cell_processor"\nprofile = "cell_processor_modbus"\n'
        'endpoint = "modbus+tcp://127.0.0.1:0"\n',
        encoding="utf-8",
    )
    faults = _write(tmp_path, '[[fault]]\nsimulator = "cp"\nkind = "silent"\nat = 0.2\n')
    proc = await asyncio.create_subprocess_exec(
        CELLBATCH,
        "sim",
        "serve",
        "--plant",
        str(plant),
        "--faults",
        str(faults),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        for _ in range(10):  # two lines expected: the endpoint, then ready
            lines.append((await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode().strip())
            if lines[-1] in ("ready", ""):
                break
        assert lines[-1] == "ready", lines
        assert lines[0].startswith("cp modbus+tcp://127.0.0.1:")
        note = (await asyncio.wait_for(proc.stderr.readline(), WAIT_S)).decode()
        assert "fault on: cp silent" in note
    finally:
        proc.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(proc.wait(), WAIT_S)
    assert status == 0

    bad = _write(tmp_path, '[[fault]]\nsimulator = "nope"\nkind = "silent"\n')
    proc = await asyncio.create_subprocess_exec(
        CELLBATCH,
        "sim",
        "serve",
        "--plant",
        str(plant),
        "--faults",
        str(bad),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 1
    assert f"{bad}:1: no simulator 'nope'" in err.decode()
    assert "Traceback" not in err.decode() and b"ready" not in out
