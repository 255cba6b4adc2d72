"""A bitstream for a board with the pip-installed yowasp flow, and its report.

    build(board, config, out) = fit check → elaborate (AcceleratorTop) → synthesis (yosys)
                                → place&route (nextpnr) → pack (ecppack/icepack)
                                → out/report.json

The stages run amaranth's own build plan (its `build_top.json` command list), one tool at
a time, so each gets a progress line and its own log in `out/build/`. nextpnr runs with
`--timing-allow-fail`: a design that misses its clock still gets a bitstream and a report
saying so (`timing_met: false`, the Fmax it reached).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hw import AcceleratorConfig
from hw.fanout import KEEP_SCRIPT

from .fit import LUT_MARGIN, estimate
from .registry import Board, BoardError, check_fit
from .reports import parse_nextpnr
from .toolchain import ToolchainError, environment

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0


class BuildError(ToolchainError):
    """A tool of the flow failed; the message names the stage and its log."""


class Stage(enum.Enum):
    ELABORATION = "elaboration"
    SYNTHESIS = "synthesis"
    PLACE_ROUTE = "place&route"
    PACK = "pack"


# amaranth's tool names in build_top.json -> the stage each runs
_STAGE_OF_TOOL = {"yosys": Stage.SYNTHESIS, "nextpnr-ecp5": Stage.PLACE_ROUTE,
                  "nextpnr-ice40": Stage.PLACE_ROUTE, "ecppack": Stage.PACK,
                  "icepack": Stage.PACK}
_BITSTREAM = {"ecp5": "top.bit", "ice40": "top.bin"}
# Per-family synthesis options. iCE40: no `-dsp`, so yosys infers no SB_MAC16: the RTL
# instantiates the blocks it wants (hw.dsp.Multiplier), and yosys 0.70's inference
# absorbs a Multiplier's registers into a block and then drops the block (product 0).
_SYNTH_OPTS = {"ecp5": "-run begin:map_luts", "ice40": ""}
# ECP5: the synthesis in two halves, with `opt_clean -purge` between them, before abc9
# maps the logic to LUTs (map_luts). Without it yosys 0.69's abc9 sometimes joins the
# outputs of two flip-flops into one net, and nextpnr refuses the netlist ("Net
# 'accelerator.prg_mem.q0[24]' is multiply driven"): the ulx3s-12f 2x2 at 417fc12 and at
# 639e413, after changes elsewhere in the design. Both flip-flops' outputs had two
# names there (the memory's `q0` and its port's `read__0__q`); with the internal names
# purged first, abc9 maps the same netlist right (`opt -full` alone did not).
_SCRIPT_AFTER_SYNTH = {"ecp5": "opt_clean -purge\nsynth_ecp5 -top top -run map_luts:",
                       "ice40": ""}

Runner = Callable[[Stage, list, Path, dict], None]


def run_tool(stage: Stage, argv: list, cwd: Path, env: dict) -> None:
    """Run one tool in `cwd` with its output in `cwd/<stage>.log`, logging a heartbeat
    every HEARTBEAT_S seconds; BuildError when it fails."""
    log_path = cwd / f"{stage.name.lower()}.log"
    start = time.monotonic()
    with open(log_path, "w") as out:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT)
        while True:
            try:
                code = process.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                log.info("%s: still running (%.0f s)", stage.value, time.monotonic() - start)
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise BuildError(f"{stage.value} failed: {Path(argv[0]).name} exited with {code}; "
                         f"see {log_path}" + ("; last lines:\n  " + "\n  ".join(tail)
                                              if tail else ""))


def _check_utilisation(board: Board, config: AcceleratorConfig, log_path: Path,
                       error: BuildError) -> None:
    """Raise BoardError naming the over-full cells when nextpnr failed because the
    synthesized design is bigger than the device (its log lists the utilisation first)."""
    if not log_path.is_file():
        return
    utilisation = parse_nextpnr(log_path.read_text(errors="replace")).utilisation
    over = [f"{used:,} {cell} of {total:,}" for cell, (used, total) in utilisation.items()
            if used > total]
    if over:
        raise BoardError(f"{config.label} does not fit {board.name} ({board.device}) after "
                         f"synthesis: it needs {', '.join(over)}; try a smaller config or a "
                         f"bigger board") from error


def _for_config(cm, config: AcceleratorConfig):
    """Compiled model `cm`, lowered again for `config` if it was compiled for another."""
    return cm if cm.config == config else dataclasses.replace(cm, config=config)


def estimate_fps(cm, config: AcceleratorConfig, clock_mhz: float) -> tuple[int, float]:
    """Modelled cycles per frame of compiled model `cm` on `config`, and frames/s at
    `clock_mhz`. A model compiled for another config is lowered again for this one."""
    cm = _for_config(cm, config)
    cycles = cm.estimate().cycles
    return cycles, clock_mhz * 1e6 / cycles


class _Tally:
    """A `host.protocol.Transport` whose far end acknowledges every request at once (a
    run is done at the first STATUS) and that counts the bytes each way."""

    def __init__(self):
        from host import protocol as P
        self.P, self.up, self.down, self.answers = P, 0, 0, []

    def send(self, data: bytes) -> None:
        P = self.P
        (frame,) = P.FrameDecoder().feed(data)
        payload = b""
        if frame.cmd == P.Command.READ:
            payload = bytes(int.from_bytes(frame.payload, "little"))
        elif frame.cmd == P.Command.STATUS:
            payload = P.DeviceStatus(P.StatusFlag.DONE).encode()
        answer = P.ack(frame.seq, frame.addr, payload).encode()
        self.up += len(data)
        self.down += len(answer)
        self.answers.append(answer)

    def receive(self, timeout: float) -> bytes:
        return self.answers.pop(0) if self.answers else b""


def link_bytes_per_frame(cm, config: AcceleratorConfig) -> tuple[int, int]:
    """Bytes on the wire to and from the board for one frame of `cm`, the way
    `board:URL` runs it (`host.backends.board.run_frame`, counted): the input in
    WRITE_GROUPS frames (WRITE where the config's link has none), RUN, one STATUS poll
    (the least: a longer run is polled more), the output in READ frames; with their
    answers."""
    from host import protocol as P
    from host.backends.board import run_frame
    cm = _for_config(cm, config)
    tally = _Tally()
    shape = tuple(cm.input_shape)
    frame = np.zeros(shape + (1,) * (3 - len(shape)), dtype=np.int64)
    run_frame(P.LinkClient(tally), cm.program, frame, watchdog=1,
              group_writes=config.group_writes)
    return tally.up, tally.down


def frame_figures(cm, config: AcceleratorConfig, clock_mhz: float, baud: int) -> dict:
    """`cm` on `config` at `clock_mhz`: modelled cycles and frames/s, the bytes of a frame
    on the UART each way and the frames/s it carries (10 bits a byte, full duplex), and
    the smaller of the two rates: the report's per-model fields."""
    cycles, fps = estimate_fps(cm, config, clock_mhz)
    up, down = link_bytes_per_frame(cm, config)
    link = baud / 10 / max(up, down)
    return {"k_pack": cm.k_pack, "cycles_per_frame": cycles, "frames_per_s": round(fps, 1),
            "link_bytes_per_frame": {"to_board": up, "from_board": down},
            "link_frames_per_s": round(link, 1),
            "end_to_end_frames_per_s": round(min(fps, link), 1)}


def other_packing(cm, config: AcceleratorConfig, clock_mhz: float, baud: int) -> dict | None:
    """The figures of `cm` compiled with the other `k_pack` (None where the choice changes
    nothing: no first convolution to pack, or the other way does not fit the memories).
    K-packing saves cycles and costs link bytes, so on a UART-bound board the plain input
    can be the faster one end to end."""
    from compiler.errors import CompileError
    other = dataclasses.replace(_for_config(cm, config), k_pack=not cm.k_pack)
    try:
        if other.program.packing.im2col == _for_config(cm, config).program.packing.im2col:
            return None
        return frame_figures(other, config, clock_mhz, baud)
    except CompileError:
        return None


def faster_packing(cm, board: Board):
    """`cm`, or `cm` with the other `k_pack` where that is faster end to end on `board` at
    its config's clock and default baud (the UART bounds a board, and K-packing costs
    kh*kw times the input bytes); with the two rates (this way, the other way or None)."""
    from .top import pick_baud
    clock = cm.config.clock_mhz
    baud = pick_baud(board, clock)
    this = frame_figures(cm, cm.config, clock, baud)["end_to_end_frames_per_s"]
    other = other_packing(cm, cm.config, clock, baud)
    if other is not None and other["end_to_end_frames_per_s"] > this:
        return (dataclasses.replace(cm, k_pack=other["k_pack"]),
                other["end_to_end_frames_per_s"], this)
    return cm, this, None if other is None else other["end_to_end_frames_per_s"]


def build(board: Board, config: AcceleratorConfig | None = None, out=".", *,
          clock_mhz: float | None = None, baud: int | None = None, model=None,
          seed: int | None = None, runner: Runner | None = None) -> dict:
    """Build the accelerator bitstream for `board` into `out`, write `out/report.json` and
    return the report. `model` (a compiler.CompiledModel) adds its frames/s estimate and
    is checked to fit the config's memories; BoardError names what does not fit before
    any synthesis. `seed` is nextpnr's placement seed (default: the board's, `Board.seed`).
    `runner` runs each tool (default: `run_tool`)."""
    from .top import AcceleratorTop, platform_for
    runner = runner or run_tool
    seed = board.seed if seed is None else seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < 2 ** 31):
        raise BoardError(f"placement seed must be an integer from 0 to {2 ** 31 - 1}, "
                         f"not {seed!r}")
    config = config or board.config
    check_fit(board, config, model)
    e = estimate(config, board.family)
    log.info("fit check: %s on %s takes ~%s %s (estimate, ±%.0f%%) of %s, %d %s of %d, %d %s "
             "of %d", config.label, board.name, f"{e.luts:,}", e.family.lut_cell,
             100 * LUT_MARGIN, f"{board.luts:,}", e.dsps, e.family.dsp_cell, board.dsps,
             e.brams, e.family.bram_cell, board.brams)
    env = environment(board.family)
    top = AcceleratorTop(board, config, clock_mhz=clock_mhz, baud=baud)
    out = Path(out)
    work = out / "build"
    work.mkdir(parents=True, exist_ok=True)
    stages = [Stage.ELABORATION]
    seconds = {}
    begin = time.monotonic()

    log.info("[1/4] %s: %s %s at %g MHz, UART %d baud", Stage.ELABORATION.value, board.name,
             config.label, top.clock_mhz, top.baud)
    plan = platform_for(board).prepare(top, name="top", debug_verilog=False,
                                       nextpnr_opts="--timing-allow-fail" + (
                                           "" if seed is None else f" --seed {seed}"),
                                       synth_opts=_SYNTH_OPTS[board.family],
                                       # hw.fanout's register copies stay copies
                                       script_after_read=KEEP_SCRIPT,
                                       script_after_synth=_SCRIPT_AFTER_SYNTH[board.family])
    plan.extract(work)
    seconds[Stage.ELABORATION.value] = round(time.monotonic() - begin, 1)

    commands = json.loads(plan.files["build_top.json"])["commands"]
    stages += [_STAGE_OF_TOOL[argv[0]] for argv in commands]
    for number, (stage, argv) in enumerate(zip(stages[1:], commands), start=2):
        tool = argv[0]
        log.info("[%d/%d] %s: %s", number, len(stages), stage.value, tool)
        start = time.monotonic()
        try:
            runner(stage, [env[tool.upper().replace("-", "_")], *argv[1:]], work, env)
        except BuildError as error:
            if stage is Stage.PLACE_ROUTE:
                _check_utilisation(board, config, work / "top.tim", error)
            raise
        seconds[stage.value] = round(time.monotonic() - start, 1)
        log.info("[%d/%d] %s done in %.0f s", number, len(stages), stage.value,
                 seconds[stage.value])

    bitstream = work / _BITSTREAM[board.family]
    if not bitstream.is_file():
        raise BuildError(f"pack finished but wrote no {bitstream}")
    name = f"{board.name}-{config.label}{bitstream.suffix}"
    shutil.copyfile(bitstream, out / name)
    timing = parse_nextpnr((work / "top.tim").read_text(errors="replace"))
    report = {
        "board": board.name, "device": board.device, "config": config.label,
        "accelerator": top.config.to_dict(),
        "clock_mhz": top.clock_mhz, "baud": top.baud, "seed": seed,
        "fmax_mhz": timing.fmax_mhz, "timing_met": timing.timing_met,
        "luts": timing.used("luts"), "ffs": timing.used("ffs"),
        "dsps": timing.used("dsps"), "brams": timing.used("brams"),
        "utilisation": {cell: list(pair) for cell, pair in timing.utilisation.items()},
        "bitstream": name,            # relative to the report's directory
        "seconds": round(time.monotonic() - begin, 1), "stage_seconds": seconds,
    }
    if model is not None:
        if (model.config.rows, model.config.cols) != (config.rows, config.cols):
            log.warning("%s is compiled for %s, the bitstream is %s: its frames/s are for the "
                        "model recompiled with `samoyed compile --board %s --config %s` (the "
                        "board refuses the %s artifact)", model.name, model.config.label,
                        config.label, board.name, config.label, model.config.label)
        report.update(model=model.name, model_config=model.config.label,
                      **frame_figures(model, config, top.clock_mhz, top.baud))
        other = other_packing(model, config, top.clock_mhz, top.baud)
        if other is not None:
            report["other_packing"] = other
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    verdict = "met" if report["timing_met"] else "NOT met"
    log.info("timing %s: Fmax %s MHz for a %g MHz clock; %d LUTs, %d FFs, %d DSPs, "
             "%d BRAMs; %.0f s", verdict, report["fmax_mhz"], top.clock_mhz, report["luts"],
             report["ffs"], report["dsps"], report["brams"], report["seconds"])
    return report
