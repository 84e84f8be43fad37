"""What a user can get wrong at the command line gets one plain line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli
from ebr import Store


@pytest.mark.parametrize(
    "args",
    [
        ["batch", "list", "--endpoint", "garbage"],
        ["batch", "show", "CB-X", "--endpoint", "http://127.0.0.1:1"],
        ["batch", "list", "--endpoint", "opc.tcp://127.0.0.1:notaport"],
    ],
)
def test_a_malformed_endpoint_is_named(args: list[str]) -> None:
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1
    assert "not an OPC UA endpoint URL" in done.output
    assert "Traceback" not in done.output and "internal error" not in done.output


def test_controller_serve_refuses_a_malformed_listen_url(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    done = CliRunner().invoke(cli, ["controller", "serve", "--listen", "garbage", "--db", db])
    assert done.exit_code == 2
    assert "--listen 'garbage' is not an OPC UA endpoint URL" in done.output
    assert "Traceback" not in done.output


def test_backup_of_a_store_named_by_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Store.open("sqlite:///cellbatch.sqlite").close()  # the default store, a relative path
    done = CliRunner().invoke(cli, ["ebr", "backup", "copy.sqlite"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "copy.sqlite").is_file()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "yesterday"], "'yesterday' is not a date; expected YYYY-MM-DD"),
        (["--since", "2026-13-01"], "'2026-13-01' is not a date"),
        (["--margin", "lagh=6"], "no figure 'lagh'; did you mean 'lag_h'?"),
        (["--margin", "lag_h=nan"], "'lag_h=nan': expected FIGURE=POSITIVE_NUMBER"),
        (["--margin", "lag_h"], "'lag_h': expected FIGURE=POSITIVE_NUMBER"),
    ],
)
def test_trend_refuses_a_bad_since_or_margin(tmp_path: Path, args: list[str], said: str) -> None:
    db = f"sqlite:///{tmp_path / 'none.sqlite'}"  # refused before any store is opened
    done = CliRunner().invoke(cli, ["trend", "expansion", "--db", db, *args])
    assert done.exit_code == 2, done.output
    assert said in done.output and "Traceback" not in done.output
