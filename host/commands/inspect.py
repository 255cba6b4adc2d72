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
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("inspect", formatter_class=formatter,
                       help="show the layers of a .samoyed file",
                       description="Print a table of layers: shapes, bits, scales, MACs, "
                                   "parameters and memory.")
    p.add_argument("artifact", metavar="FILE.samoyed")
    p.set_defaults(func=run)
