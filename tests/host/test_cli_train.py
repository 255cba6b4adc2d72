"""`samoyed train` / `demo`: help shows defaults, user errors are one line and an exit code,
and a short run writes everything it promises."""

import json
import subprocess
import sys

import pytest
import torch

from host import cli
from models import zoo
from models.train import load_trained


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "host.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "(default: fmnist-cnn)" in text and "(default: 10)" in text  # model, epochs
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "train" in top and "demo" in top


@pytest.mark.parametrize("argv, code, message", [
    (["--model", "resnet"], 4, "unknown model 'resnet'; choose one of: digits-cnn"),
    (["--bits", "9"], 4, "weight bit width must be an integer from 1 to 8, not 9"),
    (["--act-bits", "0"], 4, "activation bit width must be an integer from 1 to 8, not 0"),
    (["--bits", "4", "--weight-bits", "4"], 2, "give either --bits or --weight-bits"),
    (["--dataset", "imagenet"], 3, "unknown dataset 'imagenet'; choose one of"),
    (["--model", "tfc"], 3, "mnist needs its files: pass --data-dir"),
    (["--model", "digits-cnn", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], 3,
     "data directory /nonexistent does not exist"),
    (["--model", "lenet5", "--dataset", "digits"], 4,
     "lenet5 takes (1, 28, 28) inputs but digits has (1, 8, 8)"),
    (["--epochs", "0"], 4, "epochs must be at least 1, not 0"),
])
def test_user_errors_are_one_line(tmp_path, capsys, argv, code, message):
    assert cli.main(["train", *argv, "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_digits_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--model", "digits-cnn", "--epochs", "3", "--qat-epochs", "1",
                     "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "float twin" in result.stdout and "Brevitas QAT 8w8a" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("float_accuracy", "quant_accuracy"):
        assert 0.5 < metrics[key] <= 1.0  # 3 epochs on digits are well above chance
    assert metrics["epochs"] == 3 and metrics["seconds"] > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net, meta = load_trained(out)
    assert meta["zoo"] == "digits-cnn" and meta["weight_bits"] == 8
    x = zoo.example_input("digits-cnn", 4)
    saved = torch.load(out / "model.pt", weights_only=False)
    again = zoo.build("digits-cnn")
    again.load_state_dict(saved["state_dict"])
    again.eval()
    assert torch.equal(net(x), again(x))


def test_training_is_deterministic_under_seed(tmp_path):
    from models.train import TrainConfig, train
    cfg = TrainConfig(model="digits-cnn", epochs=1, qat_epochs=1, seed=3, weight_bits=4,
                      act_bits=4)
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert a["float_accuracy"] == b["float_accuracy"]
    assert a["quant_accuracy"] == b["quant_accuracy"]
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_float_init_reuses_the_float_twin(tmp_path):
    from models.train import TrainConfig, train
    first = train(TrainConfig(model="digits-cnn", epochs=1, qat_epochs=1), tmp_path / "a")
    second = train(TrainConfig(model="digits-cnn", epochs=1, qat_epochs=1, weight_bits=2,
                               act_bits=2, float_init=str(tmp_path / "a" / "float.pt")),
                   tmp_path / "b")
    assert second["float_accuracy"] == first["float_accuracy"]
    assert second["history"]["float"] == []
    assert cli.main(["train", "--model", "fmnist-cnn", "--float-init",
                     str(tmp_path / "a" / "float.pt"), "--out", str(tmp_path / "c")]) == 4
