"""The .samoyed artifact: round trip, and errors that say what is wrong."""

import json
import zipfile

import numpy as np
import pytest
import torch
from compiler_nets import random_net

import compiler
from compiler import artifact


@pytest.fixture(scope="module")
def compiled():
    net, shape = random_net(101, batch_norm=True)
    return compiler.compile(net, input_shape=shape)


def _rewrite(src, dst, change):
    """Copy a zip, passing each member's bytes through change(name, data)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = change(item.filename, zin.read(item.filename))
            if data is not None:
                zout.writestr(item.filename, data)


def test_round_trip_gives_same_integers(compiled, tmp_path):
    path = tmp_path / "net.samoyed"
    compiled.save(path)
    loaded = compiler.load(path)
    x = np.random.default_rng(0).integers(compiled.input_node.out.lo, compiled.input_node.out.hi + 1,
                                          (5,) + compiled.input_shape)
    assert np.array_equal(loaded.reference(x), compiled.reference(x))
    assert loaded.config == compiled.config
    assert np.array_equal(loaded.output_scale, compiled.output_scale)
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest["format_version"] == artifact.FORMAT_VERSION
    assert manifest["layers"] and manifest["input"]["shape"] == list(compiled.input_shape)
    assert set(manifest["arrays"]) == {n for n in zipfile.ZipFile(path).namelist()
                                      if n.endswith(".npy")}


def test_k_pack_option_survives_the_round_trip(compiled, tmp_path):
    import dataclasses
    path = tmp_path / "plain.samoyed"
    dataclasses.replace(compiled, k_pack=False).save(path)
    assert compiler.load(path).k_pack is False
    assert json.loads(zipfile.ZipFile(path).read("manifest.json"))["options"] == {"k_pack": False}
    # An artifact from before the option K-packs, as those builds did.
    older = tmp_path / "older.samoyed"

    def drop(name, data):
        if name != "manifest.json":
            return data
        m = json.loads(data)
        del m["options"]
        return json.dumps(m)
    _rewrite(path, older, drop)
    assert compiler.load(older).k_pack is True
    bad = tmp_path / "bad.samoyed"
    _rewrite(path, bad, lambda n, d: d.replace(b'"k_pack": false', b'"k_pack": 0')
             if n == "manifest.json" else d)
    with pytest.raises(compiler.ArtifactError, match="options.k_pack is 0, not true or false"):
        compiler.load(bad)


def test_truncated_file(compiled, tmp_path):
    path = tmp_path / "net.samoyed"
    compiled.save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(compiler.TruncatedArtifactError, match="not a complete .samoyed zip"):
        compiler.load(path)


def test_tampered_array_names_the_array(compiled, tmp_path):
    good, bad = tmp_path / "good.samoyed", tmp_path / "bad.samoyed"
    compiled.save(good)
    victim = sorted(n for n in zipfile.ZipFile(good).namelist() if n.endswith("weight.npy"))[0]

    def flip(name, data):
        if name != victim:
            return data
        b = bytearray(data)
        b[-1] ^= 1
        return bytes(b)
    _rewrite(good, bad, flip)
    with pytest.raises(compiler.ArtifactHashError, match=f"sha256 mismatch for array '{victim}'"):
        compiler.load(bad)


def test_wrong_version(compiled, tmp_path):
    good, bad = tmp_path / "good.samoyed", tmp_path / "bad.samoyed"
    compiled.save(good)

    def bump(name, data):
        if name != "manifest.json":
            return data
        m = json.loads(data)
        m["format_version"] = 99
        return json.dumps(m)
    _rewrite(good, bad, bump)
    with pytest.raises(compiler.ArtifactVersionError, match="format version 99 unsupported"):
        compiler.load(bad)


def test_missing_array(compiled, tmp_path):
    good, bad = tmp_path / "good.samoyed", tmp_path / "bad.samoyed"
    compiled.save(good)
    _rewrite(good, bad, lambda name, data: None if name.endswith("requant_mult.npy") else data)
    with pytest.raises(compiler.ArtifactError, match="missing 'arrays/.*requant_mult.npy'"):
        compiler.load(bad)
