"""`samoyed demo`: the README's main job, every stage on the default model and data.

train → compile (8×8 accelerator, `net.samoyed`) → integer reference on the whole test
split → program simulator on a sample (bit-exact check) → the accelerator RTL in
Verilator on a few images (bit-exact, cycles) → report (report.md/.json, plots).
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
    rtl_ok = True
    if args.rtl_images:
        result["rtl"] = _rtl_stage(cm, out, args.rtl_images, cfg.data_dir)
        rtl_ok = result["rtl"]["exact"]
    paths = report.write([result], out)
    print(report.markdown([result]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result["agreement"]["backend_vs_reference_exact"] and rtl_ok else 1


def _rtl_stage(cm, out, images, data_dir) -> dict:
    """The accelerator's RTL (Verilator) on the first test images, through its host
    link: outputs == the reference, and its cycle counter against the model."""
    import numpy as np
    import host
    from models import data as datasets
    from models.train import load_trained

    _stage(f"RTL: hw.Accelerator({cm.config.label}) in Verilator on {images} test images "
           "(the first build takes about 1.5 minutes, then it is cached)")
    meta = load_trained(out)[1]
    x, _ = datasets.load(meta["dataset"], data_dir).split("test")
    x_int = cm.quantize_input(x[:images])
    start = time.perf_counter()
    with host.Session(cm, backend="rtl") as session:
        ints = session.run(x_int).ints
        status = session.backend.last_status
    seconds = time.perf_counter() - start
    est = cm.estimate()
    cycles = status.counters["cycles"]
    exact = bool(np.array_equal(ints, cm.reference(x_int)))
    util = status.counters["macs"] / (cycles * cm.config.rows * cm.config.cols)
    print(f"RTL outputs {'==' if exact else '!='} reference on {images} images; "
          f"{cycles:,} cycles/frame (model {est.cycles:,}), utilization {util:.3f}, "
          f"{seconds:.0f} s with the build and the weight load")
    return {"images": images, "exact": exact, "cycles": cycles, "model_cycles": est.cycles,
            "utilization": util, "seconds": seconds}


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
    p.add_argument("--rtl-images", type=int, default=4,
                   help="test images run on the accelerator RTL in Verilator (0: skip)")
    p.set_defaults(func=run)
