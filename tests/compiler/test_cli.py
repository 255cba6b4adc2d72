"""`samoyed compile` and `samoyed inspect` end to end on a saved model directory."""

import torch

from host import cli
from models import zoo


def test_compile_then_inspect(tmp_path, capsys):
    net = zoo.build("digits-cnn", batch_norm=False)
    net.train()
    net(torch.rand(4, 1, 8, 8))
    torch.save({"zoo": "digits-cnn", "weight_bits": 8, "act_bits": 8, "scaling": "pow2",
                "batch_norm": False, "state_dict": net.state_dict()}, tmp_path / "model.pt")
    out = tmp_path / "net.samoyed"
    assert cli.main(["compile", str(tmp_path), "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert cli.main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "digits-cnn" in text and "MACs" in text and "conv" in text


def test_bad_artifact_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.samoyed"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert cli.main(["inspect", str(bad)]) == 5
    assert "not a complete .samoyed zip" in capsys.readouterr().err


def _digits_dir(tmp_path):
    net = zoo.build("digits-cnn", batch_norm=False)
    net.train()
    net(torch.rand(4, 1, 8, 8))
    torch.save({"zoo": "digits-cnn", "weight_bits": 8, "act_bits": 8, "scaling": "pow2",
                "batch_norm": False, "state_dict": net.state_dict()}, tmp_path / "model.pt")
    return tmp_path


def test_compile_for_a_config_or_a_board(tmp_path, capsys):
    """--config RxC as everywhere else; --board takes the board's config and memory
    depths; --rows/--cols override either."""
    import compiler
    from boards import registry
    model = _digits_dir(tmp_path)
    cases = [(["--config", "4x4"], (4, 4), None),
             (["--board", "ulx3s-12f"], None, registry.get("ulx3s-12f").config),
             (["--config", "8x8", "--cols", "4"], (8, 4), None)]
    for i, (flags, size, want) in enumerate(cases):
        out = tmp_path / f"net{i}.samoyed"
        assert cli.main(["compile", str(model), "--out", str(out), *flags]) == 0
        config = compiler.load(out).config
        if want is not None:
            assert config == want
        else:
            assert (config.rows, config.cols) == size
    out = tmp_path / "plain.samoyed"
    assert cli.main(["compile", str(model), "--out", str(out), "--no-k-pack"]) == 0
    assert compiler.load(out).k_pack is False and compiler.load(tmp_path / "net0.samoyed").k_pack
    assert not compiler.load(out).program.packing.im2col
    # With --board and no packing flag, the way that is faster end to end on its UART:
    # digits-cnn's 64-byte image beats its 576 K-packed bytes at 1 Mbaud.
    capsys.readouterr()
    assert compiler.load(tmp_path / "net1.samoyed").k_pack is False
    out = tmp_path / "board-packed.samoyed"
    assert cli.main(["compile", str(model), "--out", str(out), "--board", "ulx3s-12f",
                     "--k-pack"]) == 0
    assert compiler.load(out).k_pack is True
    assert cli.main(["compile", str(model), "--out", str(out), "--board", "ulx3s-12f"]) == 0
    printed = capsys.readouterr().out
    assert "plain input (--no-k-pack): " in printed and "frames/s end to end on ulx3s-12f" in printed
    assert compiler.load(out).k_pack is False
    assert cli.main(["compile", str(model), "--out", str(tmp_path / "x.samoyed"),
                     "--config", "eight"]) == 8
    assert "config 'eight' is not ROWSxCOLS, e.g. 8x8" in capsys.readouterr().err
