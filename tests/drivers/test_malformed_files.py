"""Malformed plant files and device profiles: each gives FILE:LINE:COL and a clear
message through `cellbatch plant check`, exit 1, never a traceback.

Every file in ``malformed/`` starts with ``# expect: LINE:COL: message fragment``;
a profile (``profile-*.toml``) is checked through a plant file that binds it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellbatch.cli import cli

HERE = Path(__file__).parent / "malformed"
FILES = sorted(HERE.glob("*.toml"))
_EXPECT = re.compile(r"# expect: (\d+):(\d+): (.*)")


def test_there_are_at_least_thirty() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_malformed_file_is_located_and_refused(path: Path, tmp_path: Path) -> None:
    found = _EXPECT.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert found, f"{path.name}: first line must be '# expect: LINE:COL: message'"
    line, col, message = found.groups()
    plant = path
    if path.name.startswith("profile-"):
        plant = tmp_path / "plant.toml"
        plant.write_text(
            "[[units]]\nname = 'U'\nclass = 'any'\n"
            f"profile = '{path}'\nendpoint = 'opc.tcp://127.0.0.1:9/x'\n",
            encoding="utf-8",
        )
    result = CliRunner().invoke(cli, ["plant", "check", str(plant), "--offline"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert f"{path}:{line}:{col}: " in result.output, result.output
    assert message in result.output, result.output
