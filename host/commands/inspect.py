"""`samoyed inspect`: the layer table of a `.samoyed` file."""

from __future__ import annotations


def run(args) -> int:
    import compiler
    cm = compiler.load(args.artifact)
    inp = cm.input_node
    print(f"{cm.name} ({cm.source}); input {'x'.join(map(str, inp.in_shape))} "
          f"scale {inp.quant_scale:g}, ints {inp.out.lo}..{inp.out.hi}; "
          f"config {cm.config.rows}x{cm.config.cols}")
    print(cm.summary())
    print()
    print(estimate_table(cm))
    return 0


def estimate_table(cm) -> str:
    """Per-descriptor modelled cycles, or why the network does not fit the config."""
    from compiler.program import MemoryFitError
    try:
        est, program = cm.estimate(), cm.program
    except MemoryFitError as error:
        return f"accelerator: {error}"
    rows, cols = cm.config.rows, cm.config.cols
    lines = [f"accelerator {rows}x{cols}: modelled cycles per frame",
             f"{'layer':<8} {'op':<8} {'cycles':>9} {'MACs':>11} {'util':>6}  bound"]
    for name, layer in zip(program.layer_names + ["end"], est.layers):
        lines.append(f"{name:<8} {layer.op:<8} {layer.cycles:>9,} {layer.macs:>11,} "
                     f"{layer.utilization(rows, cols):>6.3f}  {layer.bound}")
    lines.append(f"total: {est.cycles:,} cycles/frame, utilization {est.utilization:.3f}, "
                 f"{cm.config.clock_mhz * 1e6 / est.cycles:,.0f} frames/s at "
                 f"{cm.config.clock_mhz:g} MHz; memory use {program.usage}")
    return "\n".join(lines)


def register(sub, formatter) -> None:
    p = sub.add_parser("inspect", formatter_class=formatter,
                       help="show the layers of a .samoyed file",
                       description="Print a table of layers (shapes, bits, scales, MACs, "
                                   "parameters, memory) and the modelled cycles per layer on "
                                   "the artifact's accelerator config.")
    p.add_argument("artifact", metavar="FILE.samoyed")
    p.set_defaults(func=run)
