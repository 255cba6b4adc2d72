"""Accuracy and performance report: float twin, Brevitas QAT, integer reference and a
backend side by side, with agreement between levels and the modelled cycles per layer.

`evaluate(model_dir, ...)` measures one trained model; `write(results, out)` writes
`report.md`, `report.json` and PNG plots (per-layer cycles/utilization; accuracy vs bit
width when several models are given).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def evaluate(model_dir, backend: str = "auto", sample: int | None = None, config=None,
             data_dir: str | None = None) -> dict:
    """Accuracy of every level of `model_dir` (a `samoyed train` directory) on the test
    split; the backend runs on the first `sample` images (all when None)."""
    import compiler
    import host
    from hw import AcceleratorConfig
    from models import data as datasets
    from models.train import load_float_twin, load_trained, predict

    model_dir = Path(model_dir)
    net, meta = load_trained(model_dir)
    twin = load_float_twin(model_dir)
    config = config or AcceleratorConfig()
    cm = compiler.compile(net, config=config)
    ds = datasets.load(meta["dataset"], data_dir)
    x, y = ds.split("test")

    float_labels = predict(twin, x, desc="float twin").numpy()
    quant_labels = predict(net, x, desc="Brevitas QAT").numpy()
    x_int = cm.quantize_input(x)
    ref = cm.reference(x_int)
    ref_labels = cm.dequantize(ref).reshape(len(ref), -1).argmax(1)

    n = len(x) if sample is None else min(sample, len(x))
    sess = host.Session(cm, backend=backend)
    start = time.perf_counter()
    out = sess.run(x_int[:n], progress=True)
    seconds = time.perf_counter() - start
    sess.close()
    est = cm.estimate()
    bits = f"{meta['weight_bits']}w{meta['act_bits']}a"
    return {
        "model": meta["zoo"], "dir": str(model_dir), "dataset": meta["dataset"], "bits": bits,
        "weight_bits": meta["weight_bits"], "act_bits": meta["act_bits"],
        "test_images": len(x), "backend": sess.backend.name, "backend_images": n,
        "accuracy": {
            "float": float((float_labels == y).mean()),
            "brevitas": float((quant_labels == y).mean()),
            "reference": float((ref_labels == y).mean()),
            "backend": float((out.labels == y[:n]).mean()),
        },
        "agreement": {
            "reference_vs_brevitas_argmax": float((ref_labels == quant_labels).mean()),
            "backend_vs_reference_elements": float((out.ints == ref[:n]).mean()),
            "backend_vs_reference_exact": bool(np.array_equal(out.ints, ref[:n])),
        },
        "backend_images_per_s": n / seconds if seconds else None,
        "config": config.to_dict(),
        "cycles_per_frame": est.cycles,
        "utilization": est.utilization,
        "frames_per_s_at_clock": config.clock_mhz * 1e6 / est.cycles,
        "layers": [{"layer": name, "op": layer.op, "cycles": layer.cycles, "macs": layer.macs,
                    "utilization": layer.utilization(config.rows, config.cols),
                    "bound": layer.bound}
                   for name, layer in zip(cm.program.layer_names, est.layers)],
    }


def markdown(results: list[dict]) -> str:
    """The report as Markdown: an accuracy table, agreement, and per-layer cycles."""
    lines = ["# samoyed report", "",
             "| model | bits | float twin | Brevitas QAT | cm.reference | backend | "
             "backend images | reference = Brevitas (argmax) | backend = reference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, g = r["accuracy"], r["agreement"]
        lines.append(
            f"| {r['model']} | {r['bits']} | {100 * a['float']:.2f}% | {100 * a['brevitas']:.2f}% "
            f"| {100 * a['reference']:.2f}% | {100 * a['backend']:.2f}% ({r['backend']}) "
            f"| {r['backend_images']} | {100 * g['reference_vs_brevitas_argmax']:.2f}% "
            f"| {'bit-exact' if g['backend_vs_reference_exact'] else 'DIFFERS'} |")
    for r in results:
        cfg = r["config"]
        lines += ["", f"## {r['model']} {r['bits']} on {cfg['rows']}x{cfg['cols']}", "",
                  f"{r['cycles_per_frame']:,} cycles/frame, utilization {r['utilization']:.3f}, "
                  f"{r['frames_per_s_at_clock']:,.0f} frames/s at {cfg['clock_mhz']:g} MHz", ""]
        if "rtl" in r:
            t = r["rtl"]
            lines += [f"RTL (Verilator, through the host link) on {t['images']} images: "
                      f"{'bit-exact with cm.reference' if t['exact'] else 'DIFFERS from cm.reference'}"
                      f", {t['cycles']:,} cycles/frame (model {t['model_cycles']:,}), "
                      f"utilization {t['utilization']:.3f}", ""]
        lines += ["| layer | op | cycles | MACs | utilization | bound |", "|---|---|---|---|---|---|"]
        lines += [f"| {layer['layer']} | {layer['op']} | {layer['cycles']:,} | {layer['macs']:,} "
                  f"| {layer['utilization']:.3f} | {layer['bound']} |" for layer in r["layers"]]
    return "\n".join(lines) + "\n"


def plots(results: list[dict], out: Path) -> list[Path]:
    """Per-layer cycles/utilization of each model; accuracy vs bit width if several."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for r in results:
        fig, ax = plt.subplots(figsize=(8, 4))
        names = [layer["layer"] for layer in r["layers"]]
        pos = np.arange(len(names))
        ax.bar(pos, [layer["cycles"] for layer in r["layers"]], color="tab:blue")
        ax.set_xticks(pos, names)
        ax.set(xlabel="layer", ylabel="cycles", title=f"{r['model']} {r['bits']}: cycles and "
               f"utilization per layer ({r['config']['rows']}x{r['config']['cols']})")
        twin = ax.twinx()
        twin.plot(pos, [layer["utilization"] for layer in r["layers"]], "o-", color="tab:red")
        twin.set(ylabel="utilization", ylim=(0, 1.05))
        fig.tight_layout()
        path = out / f"layers-{r['model']}-{r['bits']}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if len(results) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        order = sorted(results, key=lambda r: (r["weight_bits"], r["act_bits"]))
        pos = np.arange(len(order))
        for key, name in (("float", "float twin"), ("brevitas", "Brevitas QAT"),
                          ("reference", "cm.reference"), ("backend", "backend")):
            ax.plot(pos, [100 * r["accuracy"][key] for r in order], "o-", label=name)
        ax.set_xticks(pos, [r["bits"] for r in order])
        ax.set(xlabel="bit width", ylabel="test accuracy (%)", title="accuracy vs bit width")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / "accuracy-vs-bits.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write(results: list[dict], out) -> list[Path]:
    """Write report.md, report.json and the plots into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(results))
    (out / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    return [out / "report.md", out / "report.json", *plots(results, out)]
