"""`samoyed run`: labels from files or a data set split; bad files are one clear line."""

import re

import numpy as np
import pytest
from PIL import Image

import compiler
from host import cli
from models import zoo


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "net.samoyed"
    cm = compiler.compile(zoo.calibrate(zoo.build("digits-cnn"), "digits-cnn"))
    cm.save(path)
    return path, cm


def test_files_get_the_reference_labels(artifact, tmp_path, capsys):
    path, cm = artifact
    rng = np.random.default_rng(0)
    batch = rng.random((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)
    png = (rng.random((8, 8)) * 255).astype(np.uint8)
    Image.fromarray(png).save(tmp_path / "one.png")
    assert cli.main(["run", str(path), str(tmp_path / "batch.npy"), str(tmp_path / "one.png"),
                     "--backend", "sim"]) == 0
    lines = capsys.readouterr().out.splitlines()
    images = np.concatenate([batch, (png.astype(np.float32) / 255)[None, None]])
    expected = cm.dequantize(cm.reference(cm.quantize_input(images))).argmax(1)
    assert lines[:4] == [f"{tmp_path / 'batch.npy'}[{i}]: {expected[i]}" for i in range(3)] + \
        [f"{tmp_path / 'one.png'}: {expected[3]}"]
    assert "images/s, latency" in lines[4]


def test_dataset_split(artifact, capsys):
    assert cli.main(["run", str(artifact[0]), "--dataset", "digits", "--limit", "30",
                     "--backend", "torch:cpu"]) == 0
    assert "accuracy on 30 digits test images" in capsys.readouterr().out


def wrong_size(p):
    np.save(p / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    return p / "x.npy"


def not_an_image(p):
    (p / "x.png").write_bytes(b"not a png")
    return p / "x.png"


@pytest.mark.parametrize("make, message", [
    (wrong_size, r"holds images of shape \(1, 28, 28\), the model takes \(1, 8, 8\); resize"),
    (not_an_image, "cannot read image"),
    (lambda p: p / "missing.npy", "missing.npy does not exist"),
])
def test_bad_files(artifact, tmp_path, capsys, make, message):
    assert cli.main(["run", str(artifact[0]), str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err)
    assert err.count("\n") == 1
