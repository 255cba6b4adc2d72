"""FPGA figures of issue 7: real builds with the yowasp flow.

For each target BOARD:RxC[@MHZ] (default: ulx3s-85f:8x8@125): the whole design (PLL,
UART, host link, sequencer, datapath) through synthesis, place&route and pack; post-route
Fmax, whether timing is met at the requested clock, resources and build time; and
fmnist-cnn's modelled cycles per frame on that config with the frames/s at the clock and
at the Fmax reached, then what the UART carries end to end, K-packed and with the plain
input (`--no-k-pack`). Prints a table and writes bench/results/fpga.json (builds go to
--out, one directory per target).

    .venv/bin/python bench/fpga.py [--target ulx3s-85f:8x8@125 --target icebreaker:2x2@24]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boards  # noqa: E402
import compiler  # noqa: E402
from boards.build import build  # noqa: E402
from compiler.errors import CompileError  # noqa: E402
from hw import AcceleratorConfig  # noqa: E402
from models import zoo  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def parse_target(text: str):
    """'BOARD:RxC[@MHZ]' -> (board, config with the board's depths, clock or None)."""
    spec, _, clock = text.partition("@")
    name, _, size = spec.partition(":")
    board = boards.get(name)
    config = board.config
    if size:
        rc = AcceleratorConfig.parse(size)
        config = dataclasses.replace(config, rows=rc.rows, cols=rc.cols)
    return board, config, float(clock) if clock else None


def fmnist_cnn(board, config, net):
    """fmnist-cnn compiled for `config`, or None (with the reason) if it does not fit."""
    try:
        cm = compiler.compile(net, config=config)
        cm.program                         # lowered: its tensors in the config's memories
    except CompileError as error:          # e.g. they outgrow the activation banks
        return None, f"fmnist-cnn does not fit {config.label}'s memories: {error}"
    try:
        boards.check_fit(board, config, cm)
    except boards.BoardError as error:
        return None, str(error)
    return cm, None


def source_state() -> dict:
    """The commit the figures were built from, and whether hw/ or boards/ had changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True,
                              text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "hw", "boards").splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", default=None, metavar="BOARD:RxC[@MHZ]",
                        help="a build to run (repeatable; default: ulx3s-85f:8x8@125)")
    parser.add_argument("--out", default=None, help="build directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="nextpnr placement seed for every target (default: each "
                             "board's, boards.Board.seed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    targets = [parse_target(t) for t in (args.target or ["ulx3s-85f:8x8@125"])]
    net = zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn", batch=32)
    root = Path(args.out or tempfile.mkdtemp(prefix="samoyed-fpga-"))

    results = []
    for board, config, clock in targets:
        cm, why_not = fmnist_cnn(board, config, net)
        try:
            report = build(board, config, root / f"{board.name}-{config.label}",
                           clock_mhz=clock, model=cm, seed=args.seed)
        except boards.BoardError as error:     # the config does not fit the board
            logging.error("%s", error)
            results.append({"board": board.name, "config": config.label,
                            "does_not_fit": str(error), "fmnist_cnn": why_not})
            continue
        if cm is None:
            report["fmnist_cnn"] = why_not
        else:
            report["frames_per_s_at_fmax"] = round(report["fmax_mhz"] * 1e6
                                                   / report["cycles_per_frame"], 1)
        results.append(report)

    print(f"\n{'board':<15} {'config':<6} {'clock':>6} {'Fmax':>7} {'met':<4} {'LUTs':>7} "
          f"{'FFs':>7} {'DSPs':>5} {'BRAMs':>6} {'build s':>8} {'fmnist cyc':>11} "
          f"{'fps@clk':>8} {'fps@Fmax':>9}")
    for r in results:
        if "does_not_fit" in r:
            print(f"{r['board']:<15} {r['config']:<6} {r['does_not_fit']}\n"
                  f"{'':<22} {r['fmnist_cnn']}")
            continue
        fps = (f"{r['cycles_per_frame']:>11,} {r['frames_per_s']:>8,.0f} "
               f"{r['frames_per_s_at_fmax']:>9,.0f}" if "cycles_per_frame" in r
               else f"{'does not fit':>30}")
        print(f"{r['board']:<15} {r['config']:<6} {r['clock_mhz']:>6g} {r['fmax_mhz']:>7.2f} "
              f"{'yes' if r['timing_met'] else 'NO':<4} {r['luts']:>7,} {r['ffs']:>7,} "
              f"{r['dsps']:>5} {r['brams']:>6} {r['seconds']:>8.0f} {fps}")
    for r in results:
        if "end_to_end_frames_per_s" not in r:
            continue
        ways = [r] + ([r["other_packing"]] if "other_packing" in r else [])
        print(f"{r['board']} {r['config']}, UART at {r['baud']:,} baud: " + "; ".join(
            f"{'K-packed' if w['k_pack'] else 'plain input (--no-k-pack)'} "
            f"{w['link_bytes_per_frame']['to_board']:,} bytes in a frame, "
            f"{w['end_to_end_frames_per_s']:,.1f} frames/s end to end" for w in ways))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fpga.json").write_text(json.dumps(
        {"model": "fmnist-cnn", "source": source_state(), "builds": results}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'fpga.json'} (builds in {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
