"""The board registry: every board's platform exists, its budget is the data sheet's, and
what does not fit is named (the estimate itself: test_fit.py)."""

import pytest

import boards
from boards.registry import memory_bytes
from host import cli
from hw import AcceleratorConfig


@pytest.mark.parametrize("name", boards.names())
def test_every_board_resolves(name):
    board = boards.get(name)
    platform = board.platform_class()
    assert platform.device == board.device


def test_block_ram_budgets():
    assert boards.get("ulx3s-85f").bram_bytes == 208 * 18 * 1024 // 8
    assert (boards.get("icebreaker").brams, boards.get("icebreaker").bram_bytes) == (30, 15_360)


def test_memory_bytes_of_the_default_config():
    # 8 banks x 4096 + 16384 x 8 + 1024 x 16 + 64 x 32 + 2 x 512 x 8 x 4
    assert memory_bytes(AcceleratorConfig()) == 32768 + 131072 + 16384 + 2048 + 32768


def test_too_big_configs_are_named():
    ice = boards.get("icebreaker")
    with pytest.raises(boards.BoardError, match=r"8x8 does not fit icebreaker \(iCE40UP5K\): "
                                                r"it needs ~\d\d,\d{3} ICESTORM_LC \(estimate, "
                                                r"±10%\) of 5,280, 79 SB_MAC16 of 8, \d+ "
                                                r"SB_RAM40_4K of 30 \(weights \d+, .*\); try "
                                                r"a smaller --config: 1x1 fits icebreaker"):
        boards.check_fit(ice, AcceleratorConfig())


def test_model_that_does_not_fit_the_board_config():
    import compiler
    from models import zoo
    cm = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    board = boards.get("ulx3s-12f")
    with pytest.raises(boards.BoardError, match="fmnist-cnn does not fit ulx3s-12f with 2x2: "
                                                "layer .* does not fit the activation banks"):
        boards.check_fit(board, board.config, cm)
    boards.check_fit(boards.get("ulx3s-85f"), AcceleratorConfig(), cm)


def test_unknown_board_and_cli_listing(capsys):
    with pytest.raises(boards.BoardError, match="unknown board 'de10'; choose one of: ulx3s-85f"):
        boards.get("de10")
    assert cli.main(["boards"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in boards.names()) and "default board: ulx3s-85f" in out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["ulx3s-12f"].split()[2:7] == ["2x2", "~10,250/12,096", "23/28", "19/32", "yes"]
    assert rows["ulx3s-85f"].split()[2:8] == ["8x8", "~21,944/83,640", "107/156", "121/208",
                                              "yes", "32x4"]
    # the reduced 1x1 fits, 84 LCs short of the UP5K's 5,280
    assert rows["icebreaker"].split()[2:8] == ["1x1", "~5,196/5,280", "8/8", "19/30", "yes",
                                               "1x1"]
