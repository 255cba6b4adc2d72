"""`samoyed rtl` and config errors on the command line: one line, exit code 8."""

import pytest

from host import cli


def test_rtl_writes_verilog(tmp_path, capsys):
    out = tmp_path / "accel.v"
    assert cli.main(["rtl", "--config", "4x4", "-o", str(out), "--top", "samoyed_top"]) == 0
    text = out.read_text()
    assert "module samoyed_top(" in text and "i_stream__payload" in text
    assert "top module samoyed_top, 4x4" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["rtl", "--config", "6x6"], "hw.Accelerator needs a power-of-two rows, not 6; use 4 or 8"),
    (["rtl", "--config", "8by8"], "config '8by8' is not ROWSxCOLS, e.g. 8x8"),
    (["virtual-board", "--config", "0x8", "--port", "0"], "rows"),
])
def test_config_errors_are_one_line_with_exit_code_8(argv, message, tmp_path, capsys):
    assert cli.main(argv + (["-o", str(tmp_path / "a.v")] if argv[0] == "rtl" else [])) == 8
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
