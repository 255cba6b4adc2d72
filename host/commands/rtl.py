"""`samoyed rtl`: the accelerator as Verilog, for a config (and optionally a compiled
model whose weights, parameters and program are preloaded into the memories)."""

from __future__ import annotations

import time
from pathlib import Path


def run(args) -> int:
    from hw import AcceleratorConfig
    from hw.accelerator import Accelerator
    from sim.runners import verilog_source

    config = AcceleratorConfig.parse(args.config)
    image = None
    if args.model:
        import compiler
        cm = compiler.load(args.model)
        if cm.config.label != config.label:
            from host.errors import UsageError
            raise UsageError(f"{args.model} is compiled for {cm.config.label}, not "
                             f"{config.label}; pass --config {cm.config.label} or recompile")
        config, image = cm.config, cm.program.image
    start = time.perf_counter()
    design = Accelerator(config, link_timeout=args.link_timeout, image=image)
    text = verilog_source(design, name=args.top)
    out = Path(args.output)
    out.write_text(text)
    print(f"wrote {out} ({len(text) / 1e6:.1f} MB of Verilog, top module {args.top}, "
          f"{config.label}) in {time.perf_counter() - start:.1f} s")
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("rtl", formatter_class=formatter,
                       help="write the accelerator's Verilog",
                       description="Generate hw.Accelerator(config) as Verilog: ports "
                                   "clk, rst, i_stream/o_stream (the host link's bytes), "
                                   "running, done, descriptor. See docs/accelerator.md.")
    p.add_argument("--config", default="8x8", help="accelerator config, ROWSxCOLS")
    p.add_argument("-o", "--output", default="accelerator.v", help="Verilog file to write")
    p.add_argument("--top", default="accelerator", help="top module name")
    p.add_argument("--model", default=None, metavar="NET.samoyed",
                   help="preload this compiled model's weights, parameters and program")
    p.add_argument("--link-timeout", type=int, default=1 << 16,
                   help="host link inter-byte timeout in cycles")
    p.set_defaults(func=run)
