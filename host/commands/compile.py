"""`samoyed compile`: a trained model directory or a QONNX file → one `.samoyed` file."""

from __future__ import annotations

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


def run(args) -> int:
    import compiler
    from hw import AcceleratorConfig
    source, meta = _load_source(Path(args.model))
    shape = tuple(args.input_shape) if args.input_shape else None
    config = AcceleratorConfig(rows=args.rows, cols=args.cols)
    cm = compiler.compile(source, input_shape=shape, config=config)
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
    p.add_argument("--rows", type=int, default=8, help="systolic array rows")
    p.add_argument("--cols", type=int, default=8, help="systolic array columns")
    p.set_defaults(func=run)
