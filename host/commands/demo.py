"""`samoyed demo`: the README's main job, every stage on the default model and data.

train → compile (8×8 accelerator, `net.samoyed`) → integer reference on the whole test
split → program simulator on a sample (bit-exact check) → report (report.md/.json, plots).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from models.train import load_trained, train

from .train import accuracy_table, add_training_arguments, config_from_args


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args) -> int:
    import compiler
    from host import report
    from hw import AcceleratorConfig

    out = Path(args.out)
    cfg = config_from_args(args)
    if args.reuse and (out / "metrics.json").exists():
        _stage(f"train: reusing {out}/model.pt")
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        _stage(f"train: {cfg.model} -> {out}")
        metrics = train(cfg, out)
    print(accuracy_table(metrics))

    config = AcceleratorConfig.parse(args.config)
    _stage(f"compile: {config.label} accelerator")
    start = time.perf_counter()
    cm = compiler.compile(load_trained(out)[0], config=config)
    est = cm.estimate()
    cm.save(out / "net.samoyed")
    print(cm.summary())
    print(f"compiled in {time.perf_counter() - start:.1f} s -> {out / 'net.samoyed'}; "
          f"{est.cycles:,} cycles/frame, utilization {est.utilization:.3f}")

    _stage(f"simulate + report: reference on the test split, program simulator on "
           f"{args.sim_images} images")
    result = report.evaluate(out, "sim", args.sim_images, config, cfg.data_dir)
    paths = report.write([result], out)
    print(report.markdown([result]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result["agreement"]["backend_vs_reference_exact"] else 1


def register(sub, formatter) -> None:
    p = sub.add_parser("demo", formatter_class=formatter,
                       help="the main job: train -> compile -> simulate -> report",
                       description="Run the whole flow on the default model, data and board.")
    add_training_arguments(p)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory")
    p.add_argument("--reuse", action="store_true",
                   help="reuse DIR/model.pt if it exists instead of training again")
    p.add_argument("--config", default="8x8", help="accelerator config, ROWSxCOLS")
    p.add_argument("--sim-images", type=int, default=100,
                   help="test images run through the program simulator")
    p.set_defaults(func=run)
