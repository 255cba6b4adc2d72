"""The resource estimate against the real builds: multiplier blocks and block RAMs as
yosys maps them, LUTs within the stated margin of nextpnr's counts (docs/boards.md,
"Measured"), and the configs known not to fit refused before synthesis."""

import dataclasses

import pytest

import boards
from boards.build import build
from boards.fit import FAMILIES, LUT_MARGIN, MemoryShape, estimate, memories, place_memory
from boards.registry import largest_fit, with_size
from host import cli


def _full(config):
    """`config` without the reductions of the iCE40 variant (the design as it was first
    measured on the iCEBreaker)."""
    return dataclasses.replace(config, program_beat_bytes=32, ram_delays=False,
                               serial_size=False, compact_link=False, compact_post=False,
                               compact_feeder=False, standalone_pool=False, acc_depth=64)


def _estimate(board_name, rows, cols):
    """The estimate for a board's config at RxC; "NAME:full" drops the reductions."""
    name, _, variant = board_name.partition(":")
    board = boards.get(name)
    config = with_size(board, rows, cols)
    return estimate(_full(config) if variant == "full" else config, board.family)


def test_memory_shapes_follow_the_config():
    shapes = {m.name: m for m in memories(with_size(boards.get("ulx3s-85f"), 8, 8))}
    assert shapes["activations"] == MemoryShape("activations", 4096, 64, True, copies=2,
                                                     block_ram=True)
    assert shapes["weights"] == MemoryShape("weights", 2048, 512, True, block_ram=True)  # 16384 / R words
    assert shapes["params"] == MemoryShape("params", 1024, 128, True, block_ram=True,
                                           q_hold=True)
    assert shapes["program"] == MemoryShape("program", 64, 256, True, block_ram=True)
    assert shapes["accumulators"] == MemoryShape("accumulators", 512, 256, False,
                                                       block_ram=True)


@pytest.mark.parametrize("board, rows, cols, dsps, brams", [
    # yosys 0.70 on hw e29d20a (DSP registers in use): R*C PEs + 4 partial products per
    # lane + 10 (pool writer, feeder, output-size arithmetic) + 1 (MAC counter, not at 1x1)
    ("ulx3s-85f", 1, 1, 15, 30),
    ("ulx3s-12f", 2, 2, 23, 19),
    ("ulx3s-85f", 2, 2, 23, 43),
    ("ulx3s-12f", 4, 4, 43, 33),
    ("ulx3s-85f", 4, 4, 43, 69),
    ("ulx3s-85f", 8, 8, 107, 121),
    # SB_MAC16 (the blocks hw.dsp instantiates; nextpnr's counts at 1x1 and 2x2): one
    # per PE, the post-processor's 16x14 partial product per lane (the 17-bit ones are
    # LUTs), the pool writer's 3, the output size's 2
    ("icebreaker:full", 1, 1, 7, 36),
    ("icebreaker:full", 2, 2, 11, 46),
    ("icebreaker:full", 4, 4, 25, 66),
    # the reduced variant: compact_post's four 16x16 products per lane, the feeder's two
    # and the output size's one (standalone_pool, serial_size); the program memory one
    # block of 256x16 instead of 16, 2 blocks of delay lines, no accumulator memory
    ("icebreaker", 1, 1, 8, 19),
    ("icebreaker", 2, 2, 15, 25),
])
def test_multipliers_and_block_rams_are_the_synthesized_counts(board, rows, cols, dsps, brams):
    e = _estimate(board, rows, cols)
    assert (e.dsps, e.brams) == (dsps, brams)


def test_small_memories_go_to_lut_ram_on_ecp5():
    ecp5 = FAMILIES["ecp5"]
    # the ULX3S-12F's 32-descriptor program memory: 128 DPR16X4 (what yosys chose)
    program = MemoryShape("program", 32, 256, True)
    assert (place_memory(program, ecp5).brams, place_memory(program, ecp5).lutrams) == (0, 128)
    # at 64 words the costs tie and yosys keeps the 8 DP16KD
    assert place_memory(MemoryShape("program", 64, 256, True), ecp5).brams == 8
    # the iCE40 has no LUT RAM: 16 blocks of 256x16 for 256-bit words
    assert place_memory(program, FAMILIES["ice40"]).brams == 16


@pytest.mark.parametrize("board, rows, cols, measured", [
    ("ulx3s-12f", 2, 2, 9_337),
    ("ulx3s-12f", 4, 4, 13_115),      # packed, then not placed: 44 MULT18X18D of 28
    ("ulx3s-85f", 4, 4, 12_558),
    ("ulx3s-85f", 8, 8, 21_650),
    ("ulx3s-85f", 8, 8, 22_143),
    ("ulx3s-85f", 8, 8, 23_535),      # hw 11d6e8e
    # packed, then not placed (hw.dsp's SB_MAC16s): the design (hw f81568b), and the
    # reduced variant (the registry's config: every reduction, one-pixel tiles)
    ("icebreaker:full", 1, 1, 13_025),
    ("icebreaker:full", 2, 2, 18_156),
    ("icebreaker", 1, 1, 5_196),      # placed and routed, met at 18 MHz (hw 680b873)
    ("icebreaker", 2, 2, 7_199),
])
def test_lut_estimate_is_within_its_margin_of_the_builds(board, rows, cols, measured):
    assert _estimate(board, rows, cols).luts == pytest.approx(measured, rel=LUT_MARGIN)


@pytest.mark.parametrize("board, size, message", [
    ("ulx3s-12f", "4x4", r"4x4 does not fit ulx3s-12f \(LFE5U-12F\): it needs ~14,\d{3} "
                         r"TRELLIS_COMB \(estimate, ±10%\) of 12,096, 43 MULT18X18D of 28, "
                         r"33 DP16KD of 32 \(weights 16, activations 8, params 4, "
                         r"accumulators 4, link staging 1\); try a smaller --config: 2x2 fits "
                         r"ulx3s-12f"),
    ("orangecrab-25f", "4x4", r"4x4 does not fit orangecrab-25f \(LFE5U-25F\): it needs 43 "
                              r"MULT18X18D of 28, 57 DP16KD of 56 \(weights 32, "
                              r"activations 16, .*\); try a smaller --config: 2x2 fits"),
    ("ulx3s-85f", "16x8", r"16x8 does not fit ulx3s-85f \(LFE5U-85F\): it needs 171 "
                          r"MULT18X18D of 156; try a smaller --config: 8x8 fits"),
    ("icebreaker", "2x2", r"2x2 does not fit icebreaker \(iCE40UP5K\): it needs ~7,\d{3} "
                          r"ICESTORM_LC \(estimate, ±10%\) of 5,280, 15 SB_MAC16 of 8; try a "
                          r"smaller --config: 1x1 fits icebreaker"),
])
def test_known_non_fits_are_refused_before_synthesis(tmp_path, board, size, message):
    rows, cols = map(int, size.split("x"))
    def never(*args):
        raise AssertionError("no tool may run when the fit check fails")
    b = boards.get(board)
    with pytest.raises(boards.BoardError, match=message):
        build(b, with_size(b, rows, cols), tmp_path, runner=never)
    assert not (tmp_path / "build").exists()


def test_every_board_default_fits():
    for board in boards.BOARDS.values():
        assert boards.fit_problems(board, board.config) == [], board.name
    # the iCEBreaker's reduced 1x1, 84 LCs short of its 5,280 (the build's count)
    assert largest_fit(boards.get("icebreaker")).label == "1x1"
    # by the count: 32x4 takes 155 of 156 MULT18X18D (not built); 16x8 would need 171
    assert largest_fit(boards.get("ulx3s-85f")).label == "32x4"


def test_cli_build_on_the_icebreaker_refuses_2x2_before_synthesis(tmp_path, capsys):
    assert cli.main(["build", "--board", "icebreaker", "--config", "2x2", "--out",
                     str(tmp_path)]) == 6
    err = capsys.readouterr().err
    assert "2x2 does not fit icebreaker (iCE40UP5K): it needs ~7,199" in err
    assert "ICESTORM_LC (estimate, ±10%) of 5,280" in err
    assert "try a smaller --config: 1x1 fits icebreaker" in err
    assert not (tmp_path / "build").exists()
