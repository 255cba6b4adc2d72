"""bench/timing_paths.py on a small SDF written like nextpnr's: the longest arrival,
the endpoint counts and the source/sink grouping of --over."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "timing_paths.py"


def _module():
    spec = importlib.util.spec_from_file_location("timing_paths", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(kind, name, iopath, check=""):
    return (f'  (CELL\n    (CELLTYPE "{kind}")\n    (INSTANCE {name})\n'
            f'    (DELAY\n      (ABSOLUTE\n        (IOPATH {iopath})\n      )\n    )\n'
            f'{check}  )\n')


def _ff(name):
    # nextpnr escapes brackets; the first triple of SETUPHOLD is the setup time
    return _cell("TRELLIS_FF", name, "CLK Q (500:500:500) (500:500:500)",
                 "    (TIMINGCHECK\n      (SETUPHOLD (posedge DI) (posedge CLK) "
                 "(100:100:100) (0:0:0))\n    )\n")


def _sdf(tmp_path):
    # rst drives 3 bits of q over 8.4 ns routes; a[0] -> LUT -> b[0] is 4.0 + 0.3 + 4.0
    cells = [_ff("rst_TRELLIS_FF_Q"), _ff(r"a\[0\]_TRELLIS_FF_Q"),
             _ff(r"b\[0\]_TRELLIS_FF_Q")]
    cells += [_ff(rf"q\[{k}\]_TRELLIS_FF_Q_{k}") for k in range(3)]
    cells.append(_cell("LUT4", "lut", "A Z (300:300:300) (300:300:300)"))
    nets = [r"a\[0\]_TRELLIS_FF_Q/Q lut/A (4000:4000:4000) (4000:4000:4000)",
            r"lut/Z b\[0\]_TRELLIS_FF_Q/DI (3900:4000:4000) (3900:4000:4000)"]
    nets += [rf"rst_TRELLIS_FF_Q/Q q\[{k}\]_TRELLIS_FF_Q_{k}/DI (8400:8400:8400) "
             "(8400:8400:8400)" for k in range(3)]
    top = _cell("top", "", "X Y (0:0:0)").replace(
        "        (IOPATH X Y (0:0:0))\n",
        "".join(f"        (INTERCONNECT {net})\n" for net in nets))
    text = ('(DELAYFILE\n  (SDFVERSION "3.0")\n  (TIMESCALE 1ps)\n' + top + "".join(cells)
            + ")\n")
    path = tmp_path / "top.sdf"
    path.write_text(text)
    return path


def test_worst_path_and_counts(tmp_path, capsys):
    _module().analyse(str(_sdf(tmp_path)), 5, over=8.5)
    out = capsys.readouterr().out
    # rst: 0.5 + 8.4 + 0.1 setup; a -> b: 0.5 + 4.0 + 0.3 + 4.0 + 0.1
    # (endpoints: the D inputs a path reaches)
    assert out.startswith("4 endpoints; worst 9.00 ns (111.11 MHz)")
    assert "over 9 ns: 0" in out and "over 8 ns: 4" in out
    # the three q bits are one source/sink pair; b (8.9 ns) is its own
    assert "     3  rst -> q" in out
    assert "     1  a -> b" in out
    assert "8.90 ns  a[0]_TRELLIS_FF_Q/Q (TRELLIS_FF) -> b[0]_TRELLIS_FF_Q/DI" in out
