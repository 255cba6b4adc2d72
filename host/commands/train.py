"""`samoyed train`: float twin + QAT training of a zoo model."""

from __future__ import annotations

import json

from models import zoo
from models.train import TrainConfig, train

from ..errors import UsageError

_DEFAULTS = TrainConfig()


def add_training_arguments(p) -> None:
    """The training options shared by `train` and `demo`."""
    p.add_argument("--model", default=zoo.DEFAULT_MODEL, metavar="NAME",
                   help=f"zoo model: {', '.join(zoo.names())}")
    p.add_argument("--dataset", default=None,
                   help="data set (digits, fashion-mnist, mnist, cifar10); default: the model's")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    p.add_argument("--bits", type=int, default=None, metavar="B",
                   help="weight and activation bit width, 1-8 (default: the model's, 8 for ours)")
    p.add_argument("--weight-bits", type=int, default=None, metavar="W", help="weight bit width")
    p.add_argument("--act-bits", type=int, default=None, metavar="A", help="activation bit width")
    p.add_argument("--scaling", choices=[s.value for s in zoo.Scaling],
                   default=_DEFAULTS.scaling, help="quantizer scale restriction")
    p.add_argument("--no-batch-norm", action="store_true",
                   help="build the model without batch norm (our models only)")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs,
                   help="float training epochs")
    p.add_argument("--qat-epochs", type=int, default=_DEFAULTS.qat_epochs,
                   help="QAT epochs, starting from the float weights")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--float-init", default=None, metavar="FLOAT_PT",
                   help="start QAT from this float.pt instead of training the float twin")


def config_from_args(args) -> TrainConfig:
    if args.bits is not None and (args.weight_bits is not None or args.act_bits is not None):
        raise UsageError("give either --bits or --weight-bits/--act-bits, not both")
    weight_bits = args.bits if args.bits is not None else args.weight_bits
    act_bits = args.bits if args.bits is not None else args.act_bits
    cfg = TrainConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                      weight_bits=weight_bits, act_bits=act_bits, scaling=args.scaling,
                      batch_norm=not args.no_batch_norm, epochs=args.epochs,
                      qat_epochs=args.qat_epochs, batch_size=args.batch_size, seed=args.seed,
                      threads=args.threads, float_init=args.float_init)
    # Validate names and bit widths before any data is read.
    zoo.build(cfg.model, weight_bits, act_bits, scaling=cfg.scaling, batch_norm=cfg.batch_norm)
    return cfg


def accuracy_table(metrics: dict) -> str:
    """The float/QAT accuracy table printed after training."""
    bits = f"{metrics['weight_bits']}w{metrics['act_bits']}a"
    rows = [("float twin", metrics["float_accuracy"]), (f"Brevitas QAT {bits}", metrics["quant_accuracy"])]
    width = max(len(r[0]) for r in rows)
    lines = [f"{metrics['model']} on {metrics['dataset']} (test split), "
             f"{metrics['seconds']:.0f} s",
             f"{'network':<{width}}  accuracy", f"{'-' * width}  --------"]
    lines += [f"{name:<{width}}  {100 * acc:7.2f}%" for name, acc in rows]
    delta = 100 * (metrics["quant_accuracy"] - metrics["float_accuracy"])
    lines.append(f"{'QAT - float':<{width}}  {delta:+7.2f} points")
    return "\n".join(lines)


def run(args) -> int:
    metrics = train(config_from_args(args), args.out)
    print(accuracy_table(metrics))
    print(f"wrote {args.out}/model.pt, float.pt, metrics.json, curves.png")
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("train", formatter_class=formatter,
                       help="train a zoo model: float twin, then QAT",
                       description="Train the float twin, then the Brevitas QAT net from its "
                                   "weights; write model.pt, float.pt, metrics.json, curves.png.")
    add_training_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)
