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
