import subprocess
import sys

import pytest

from nbp.cli import COMMANDS, main


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command" in err[0] and "data" in err[0]


def test_unknown_subcommand_lists_valid_names(capsys):
    assert main(["bench", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nbp bench nope" in err and "sampling" in err


@pytest.mark.slow
def test_python_dash_m_entry_point_prints_usage():
    out = subprocess.run([sys.executable, "-m", "nbp", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout
