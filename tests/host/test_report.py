"""`samoyed report` on two small trained models: every level side by side."""

import json

import pytest

from host import cli
from models.train import TrainConfig, train
from sim.cycles import DESCRIPTOR_FETCH


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    train(TrainConfig(model="digits-cnn", epochs=2, qat_epochs=1), root / "d8")
    train(TrainConfig(model="digits-cnn", epochs=2, qat_epochs=1, weight_bits=4, act_bits=4,
                      float_init=str(root / "d8" / "float.pt")), root / "d4")
    return root


def test_report_two_models(trained, tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main(["report", "--model", str(trained / "d8"), "--model", str(trained / "d4"),
                     "--backend", "sim", "--sample", "40", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "report.json").read_text())
    assert [r["bits"] for r in results] == ["8w8a", "4w4a"]
    metrics = json.loads((trained / "d8" / "metrics.json").read_text())
    for r in results:
        assert r["agreement"]["backend_vs_reference_exact"] is True
        assert r["backend_images"] == 40 and r["test_images"] == 359
        assert set(r["accuracy"]) == {"float", "brevitas", "reference", "backend"}
        # the layers and END's fetch
        assert r["layers"] and r["cycles_per_frame"] == (sum(x["cycles"] for x in r["layers"])
                                                         + DESCRIPTOR_FETCH)
    assert results[0]["accuracy"]["brevitas"] == pytest.approx(metrics["quant_accuracy"])
    assert results[0]["accuracy"]["float"] == pytest.approx(metrics["float_accuracy"])
    for name in ("report.md", "layers-digits-cnn-8w8a.png", "accuracy-vs-bits.png"):
        assert (out / name).stat().st_size > 0
    assert "| digits-cnn | 4w4a |" in capsys.readouterr().out


def test_report_missing_model_is_one_line(tmp_path, capsys):
    assert cli.main(["report", "--model", str(tmp_path / "none")]) == 4
    assert "model.pt does not exist; train a model first" in capsys.readouterr().err
