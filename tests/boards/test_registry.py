"""The board registry: every board's platform exists, its default config fits, and
what does not fit is named."""

import pytest

import boards
from boards.registry import memory_bytes
from host import cli
from hw import AcceleratorConfig


@pytest.mark.parametrize("name", boards.names())
def test_every_board_resolves_and_its_default_fits(name):
    board = boards.get(name)
    platform = board.platform_class()
    assert platform.device == board.device
    assert boards.fit_problems(board, board.config) == []


def test_memory_bytes_of_the_default_config():
    # 8 banks x 4096 + 16384 x 8 + 1024 x 16 + 64 x 32 + 2 x 512 x 8 x 4
    assert memory_bytes(AcceleratorConfig()) == 32768 + 131072 + 16384 + 2048 + 32768


def test_too_big_configs_are_named():
    ice = boards.get("icebreaker")
    with pytest.raises(boards.BoardError, match=r"8x8 needs 64 multipliers, icebreaker has 8; "
                                                r".*8x8 memories need 215,040 bytes of block "
                                                r"RAM, icebreaker has 15,360; try the board's "
                                                r"default config 2x2"):
        boards.check_fit(ice, AcceleratorConfig())


def test_model_that_does_not_fit_the_board_config():
    import compiler
    from models import zoo
    cm = compiler.compile(zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn"))
    board = boards.get("ulx3s-12f")
    with pytest.raises(boards.BoardError, match="fmnist-cnn does not fit ulx3s-12f with 4x4: "
                                                "layer 4 does not fit the activation banks"):
        boards.check_fit(board, board.config, cm)
    boards.check_fit(boards.get("ulx3s-85f"), AcceleratorConfig(), cm)


def test_unknown_board_and_cli_listing(capsys):
    with pytest.raises(boards.BoardError, match="unknown board 'de10'; choose one of: ulx3s-85f"):
        boards.get("de10")
    assert cli.main(["boards"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in boards.names()) and "default board: ulx3s-85f" in out
