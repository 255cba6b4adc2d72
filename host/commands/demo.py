"""`samoyed demo`: the README's main job, every stage on the default model and data.

train → compile (8×8 accelerator) → reference on the whole test split → program
simulator on a sample (bit-exact check) → report (accuracy table, cycles, utilization).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from models import data as datasets
from models.train import load_trained, train

from .train import accuracy_table, add_training_arguments, config_from_args


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


@torch.no_grad()
def _brevitas_labels(net, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(net(torch.from_numpy(x[i:i + batch]))).argmax(1)
                           for i in range(0, len(x), batch)])


def run(args) -> int:
    import compiler
    import host
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

    _stage(f"compile: {args.rows}x{args.cols} accelerator")
    net, meta = load_trained(out)
    config = AcceleratorConfig(rows=args.rows, cols=args.cols)
    start = time.perf_counter()
    cm = compiler.compile(net, config=config)
    est = cm.estimate()
    cm.save(out / "net.samoyed")
    print(cm.summary())
    print(f"compiled in {time.perf_counter() - start:.1f} s -> {out / 'net.samoyed'}; "
          f"{est.cycles:,} cycles/frame, utilization {est.utilization:.3f}")

    _stage("reference: integer golden model on the whole test split")
    ds = datasets.load(metrics["dataset"], cfg.data_dir)
    x_test, y_test = ds.split("test")
    x_int = cm.quantize_input(x_test)
    ref = cm.reference(x_int)
    ref_labels = cm.dequantize(ref).reshape(len(ref), -1).argmax(1)
    brevitas_labels = _brevitas_labels(net, x_test)
    ref_acc = float((ref_labels == y_test).mean())
    argmax_agree = float((ref_labels == brevitas_labels).mean())
    print(f"reference accuracy {100 * ref_acc:.2f}%, argmax agreement with Brevitas "
          f"{100 * argmax_agree:.2f}%")

    _stage(f"simulate: program simulator on {args.sim_images} test images")
    n = min(args.sim_images, len(x_int))
    start = time.perf_counter()
    sim = host.Session(cm, backend="sim").run(x_int[:n])
    sim_seconds = time.perf_counter() - start
    exact = bool(np.array_equal(sim.ints, ref[:n]))
    print(f"sim == reference on {n} images: {exact} ({1000 * sim_seconds / n:.1f} ms/frame)")

    _stage("report")
    report = {
        "model": metrics["model"], "dataset": metrics["dataset"],
        "bits": f"{metrics['weight_bits']}w{metrics['act_bits']}a",
        "float_accuracy": metrics["float_accuracy"],
        "quant_accuracy": metrics["quant_accuracy"],
        "reference_accuracy": ref_acc,
        "reference_brevitas_argmax_agreement": argmax_agree,
        "sim_images": n, "sim_equals_reference": exact,
        "sim_accuracy": float((sim.labels == y_test[:n]).mean()),
        "config": config.to_dict(),
        "cycles_per_frame": est.cycles, "utilization": est.utilization,
        "layers": [{"layer": name, "cycles": layer.cycles, "macs": layer.macs,
                    "utilization": layer.utilization(config.rows, config.cols),
                    "bound": layer.bound}
                   for name, layer in zip(cm.program.layer_names, est.layers)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [("float twin (PyTorch)", report["float_accuracy"], "test split"),
            (f"Brevitas QAT {report['bits']}", report["quant_accuracy"], "test split"),
            ("cm.reference (integers)", ref_acc, "test split"),
            ("program simulator", report["sim_accuracy"], f"first {n} images")]
    print(f"{'level':<26} {'accuracy':>8}  on")
    for name, acc, on in rows:
        print(f"{name:<26} {100 * acc:7.2f}%  {on}")
    print(f"sim == reference: {exact}; reference/Brevitas argmax agreement "
          f"{100 * argmax_agree:.2f}%")
    print(f"{config.rows}x{config.cols} array: {est.cycles:,} cycles/frame, utilization "
          f"{est.utilization:.3f}, {config.clock_mhz * 1e6 / est.cycles:,.0f} frames/s at "
          f"{config.clock_mhz:g} MHz")
    print(f"wrote {out / 'report.json'}")
    return 0 if exact else 1


def register(sub, formatter) -> None:
    p = sub.add_parser("demo", formatter_class=formatter,
                       help="the main job: train -> compile -> simulate -> report",
                       description="Run the whole flow on the default model, data and board.")
    add_training_arguments(p)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory")
    p.add_argument("--reuse", action="store_true",
                   help="reuse DIR/model.pt if it exists instead of training again")
    p.add_argument("--rows", type=int, default=8, help="systolic array rows")
    p.add_argument("--cols", type=int, default=8, help="systolic array columns")
    p.add_argument("--sim-images", type=int, default=100,
                   help="test images run through the program simulator")
    p.set_defaults(func=run)
