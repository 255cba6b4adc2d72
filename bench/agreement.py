"""Agreement of `cm.reference` with Brevitas's own integers; prints figures, writes JSON.

    python bench/agreement.py [--samples 128] [--out bench/results/agreement.json]

Nets are randomly initialized and calibrated with a few train-mode passes on random
inputs (no training), batch-norm statistics made non-trivial (some negative scales);
inputs are uniform random images. Per-layer agreement feeds each layer the integers
Brevitas fed it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compiler"))

import compiler  # noqa: E402
from compiler import compare  # noqa: E402
from models import zoo  # noqa: E402


@torch.no_grad()
def calibrate(net, shape, seed):
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(3):
        net(torch.rand(16, *shape, generator=g))
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            sign = torch.where(torch.rand(n, generator=g) < 0.2, -1.0, 1.0)
            m.weight.copy_((torch.rand(n, generator=g) * 1.2 + 0.3) * sign)
            m.bias.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_mean.add_(torch.randn(n, generator=g) * 0.1 * m.running_var.sqrt())
    net.eval()
    return net


def measure(label, net, shape, samples, seed=0):
    t = time.perf_counter()
    cm = compiler.compile(net, input_shape=shape)
    compile_s = time.perf_counter() - t
    x = torch.rand(samples, *shape, generator=torch.Generator().manual_seed(seed + 1))
    ints, out = compare.brevitas_ints(net, cm, x)
    input_equal = bool(np.array_equal(cm.quantize_input(x.numpy()), ints[cm.graph.input.name]))
    rows = compare.layer_agreement(cm, ints)
    elem, argmax = compare.end_to_end(cm, ints, out)
    fits = [n.requant for n in cm.graph if getattr(n, "requant", None) is not None]
    return {
        "net": label, "compile_s": round(compile_s, 3), "input_equal": input_equal,
        "layers": [{"name": r.name, "elements": r.elements, "equal": r.equal,
                    "fraction": r.fraction, "max_lsb": r.max_lsb} for r in rows],
        "layer_min_fraction": min((r.fraction for r in rows), default=1.0),
        "layer_max_lsb": max((r.max_lsb for r in rows), default=0),
        "end_to_end_fraction": None if elem is None else elem.fraction,
        "end_to_end_max_lsb": None if elem is None else elem.max_lsb,
        "argmax": argmax,
        "requant": {"shift": sum(f.method == "shift" for f in fits),
                    "fit_exact": sum(f.method == "fit" and f.exact for f in fits),
                    "fit_inexact": sum(f.method == "fit" and not f.exact for f in fits)},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--random-nets", type=int, default=20)
    p.add_argument("--out", default="bench/results/agreement.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from compiler_nets import random_net
    groups = {"pow2 (no batch norm)": [], "batch norm / float scales": [], "FINN bnn_pynq": []}
    for seed in range(args.random_nets):
        net, shape = random_net(seed)
        groups["pow2 (no batch norm)"].append(measure(f"random#{seed}", net, shape, args.samples))
    for name in ("lenet5", "digits-cnn", "fmnist-cnn"):
        net = calibrate(zoo.build(name, batch_norm=False), zoo.info(name).input_shape, 0)
        groups["pow2 (no batch norm)"].append(
            measure(f"{name} pow2 no-BN", net, zoo.info(name).input_shape, args.samples))
    for seed in range(100, 100 + args.random_nets):
        net, shape = random_net(seed, batch_norm=True)
        groups["batch norm / float scales"].append(
            measure(f"random-bn#{seed}", net, shape, args.samples))
    for name, kw in (("digits-cnn", {}), ("fmnist-cnn", {}), ("fmnist-cnn", {"scaling": "float"}),
                     ("lenet5", {"scaling": "float", "batch_norm": False}),
                     ("fmnist-cnn", {"scaling": "float", "batch_norm": False})):
        shape = zoo.info(name).input_shape
        for bits in (8, 4):
            net = calibrate(zoo.build(name, bits, bits, **kw), shape, bits)
            label = f"{name} {bits}w{bits}a " + " ".join(f"{k}={v}" for k, v in kw.items())
            groups["batch norm / float scales"].append(measure(label.strip(), net, shape,
                                                               args.samples))
    for name in ("tfc", "sfc", "lfc", "cnv"):
        shape = zoo.info(name).input_shape
        for label_bits in zoo.info(name).description.split("shipped: ")[1].rstrip(")").split(", "):
            w, a = int(label_bits[0]), int(label_bits[2])
            net = calibrate(zoo.build(name, w, a), shape, w * 10 + a)
            groups["FINN bnn_pynq"].append(measure(f"{name} {label_bits}", net, shape,
                                                   args.samples))
    cnv = calibrate(zoo.build("cnv", 2, 2), zoo.info("cnv").input_shape, 7)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        compiler.compile(cnv)
        times.append(time.perf_counter() - t)

    print(f"{'net':<42} {'layers =':>9} {'max LSB':>7} {'e2e =':>8} {'argmax':>7} "
          f"{'compile':>8}  requant (shift/fit exact/fit inexact)")
    for group, rows in groups.items():
        print(f"-- {group}")
        for r in rows:
            e2e = "-" if r["end_to_end_fraction"] is None else f"{100 * r['end_to_end_fraction']:.2f}%"
            q = r["requant"]
            print(f"{r['net']:<42} {100 * r['layer_min_fraction']:8.3f}% {r['layer_max_lsb']:7d} "
                  f"{e2e:>8} {100 * r['argmax']:6.2f}% {r['compile_s']:7.2f}s  "
                  f"{q['shift']}/{q['fit_exact']}/{q['fit_inexact']}"
                  + ("" if r["input_equal"] else "  INPUT MISMATCH"))
    summary = {}
    for group, rows in groups.items():
        summary[group] = {
            "nets": len(rows),
            "layer_min_fraction": min(r["layer_min_fraction"] for r in rows),
            "layer_max_lsb": max(r["layer_max_lsb"] for r in rows),
            "end_to_end_min_fraction": min((r["end_to_end_fraction"] for r in rows
                                            if r["end_to_end_fraction"] is not None), default=None),
            "argmax_min": min(r["argmax"] for r in rows),
            "inputs_equal": all(r["input_equal"] for r in rows),
        }
        s = summary[group]
        e2e = "n/a" if s["end_to_end_min_fraction"] is None else f"{100 * s['end_to_end_min_fraction']:.3f}%"
        print(f"{group}: {s['nets']} nets; per-layer elements equal >= "
              f"{100 * s['layer_min_fraction']:.3f}%, max {s['layer_max_lsb']} LSB; end-to-end "
              f"elements equal >= {e2e}; argmax agreement >= {100 * s['argmax_min']:.2f}%")
    print(f"compile time cnv 2w2a: best {min(times):.2f} s of 3 (limit 5 s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": args.samples, "summary": summary, "groups": groups,
                               "cnv_compile_s": min(times)}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
