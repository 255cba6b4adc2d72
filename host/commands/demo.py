"""`samoyed demo`: the README's main job, every stage on the default model and data."""

from __future__ import annotations

from pathlib import Path

from models.train import train

from .train import accuracy_table, add_training_arguments, config_from_args


def run(args) -> int:
    out = Path(args.out)
    print(f"== train: {args.model} -> {out}")
    metrics = train(config_from_args(args), out)
    print(accuracy_table(metrics))
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("demo", formatter_class=formatter,
                       help="the main job: train -> compile -> simulate -> report",
                       description="Run the whole flow on the default model, data and board.")
    add_training_arguments(p)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory")
    p.set_defaults(func=run)
