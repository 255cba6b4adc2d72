"""`samoyed compile`: a trained model directory or a QONNX file → one `.samoyed` file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import UsageError


def _load_source(path: Path):
    if path.is_dir():
        from models.train import load_trained
        net, meta = load_trained(path)
        return net, meta
    if path.suffix.lower() == ".onnx" and path.is_file():
        return str(path), {}
    raise UsageError(f"{str(path)!r} is neither a model directory (with model.pt) nor a .onnx file")


def _packing_for(cm, board):
    """K-packed or plain input, whichever is faster end to end on `board`; says which."""
    from boards.build import faster_packing
    from boards.registry import BoardError
    try:
        chosen, rate, other = faster_packing(cm, board)
    except BoardError:          # no UART rate at this clock: `samoyed build` will say so
        return cm
    if other is not None:
        how = "K-packed input" if chosen.k_pack else "plain input (--no-k-pack)"
        print(f"{how}: {rate:,.1f} frames/s end to end on {board.name} at "
              f"{cm.config.clock_mhz:g} MHz, the other way {other:,.1f}; --k-pack or "
              f"--no-k-pack to choose")
    return chosen


def run(args) -> int:
    import compiler
    from hw import AcceleratorConfig
    source, meta = _load_source(Path(args.model))
    shape = tuple(args.input_shape) if args.input_shape else None
    size = AcceleratorConfig.parse(args.config or "8x8")
    if args.board:
        from boards import registry
        board = registry.get(args.board)
        config = board.config if args.config is None else registry.with_size(
            board, size.rows, size.cols)
    else:
        config = size
    if args.rows or args.cols:
        config = dataclasses.replace(config, rows=args.rows or config.rows,
                                     cols=args.cols or config.cols)
    cm = compiler.compile(source, input_shape=shape, config=config,
                          k_pack=True if args.k_pack is None else args.k_pack)
    if args.board and args.k_pack is None:
        cm = _packing_for(cm, board)
    cm.meta.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
    cm.save(args.out)
    print(cm.summary())
    print(f"wrote {args.out}")
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("compile", formatter_class=formatter,
                       help="compile a trained model or QONNX file to a .samoyed artifact",
                       description="Compile a model directory written by `samoyed train` (or a "
                                   "QONNX .onnx file) into one .samoyed file and print its "
                                   "layer table.")
    p.add_argument("model", metavar="MODEL_DIR_OR_ONNX")
    p.add_argument("--out", required=True, metavar="FILE", help="output .samoyed file")
    p.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                   help="per-sample input shape C H W (default: the zoo's or the ONNX graph's)")
    p.add_argument("--config", default=None, metavar="RxC",
                   help="accelerator array, e.g. 8x8 (default: 8x8, or the board's)")
    p.add_argument("--board", default=None, metavar="NAME",
                   help="compile for this board's accelerator config and memory depths "
                        "(`samoyed boards` lists them)")
    p.add_argument("--rows", type=int, default=None, help="array rows (overrides --config)")
    p.add_argument("--cols", type=int, default=None,
                   help="array columns (overrides --config)")
    packing = p.add_mutually_exclusive_group()
    packing.add_argument("--no-k-pack", dest="k_pack", action="store_const", const=False,
                         help="keep the first convolution as it is: the board receives the "
                              "plain image instead of its im2col packing (kh*kw times fewer "
                              "input bytes, more cycles); for boards whose UART bounds the "
                              "frame rate")
    packing.add_argument("--k-pack", dest="k_pack", action="store_const", const=True,
                         help="pack the first convolution's taps into the array's rows "
                              "(fewest cycles; the default without --board). With --board "
                              "and neither flag, the way that is faster end to end on the "
                              "board's UART")
    p.set_defaults(func=run)
