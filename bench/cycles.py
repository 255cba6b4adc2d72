"""Cycle-model and program-simulator figures of issue 4.

For fmnist-cnn (trained weights from --model DIR if given, else a calibrated untrained
net: the cycle count depends only on the architecture) on 8×8 and 16×16 arrays: modelled
cycles per frame, MAC-weighted utilization over the whole frame, and the first conv
layer and the FC head separately; then the program simulator's speed on whole frames.
Prints a table and writes bench/results/cycles.json.

    .venv/bin/python bench/cycles.py [--model runs/demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import compiler  # noqa: E402
from hw import AcceleratorConfig  # noqa: E402
from models import zoo  # noqa: E402
from sim import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def load_net(model_dir: str | None):
    if model_dir:
        from models.train import load_trained
        return load_trained(model_dir)[0]
    return zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn", batch=32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a `samoyed train` output directory")
    parser.add_argument("--frames", type=int, default=20, help="frames for the simulator speed")
    args = parser.parse_args()
    net = load_net(args.model)

    figures = {"model": "fmnist-cnn", "configs": {}}
    print(f"{'config':<7} {'layer':<6} {'op':<5} {'cycles':>8} {'MACs':>10} {'util':>6}  bound")
    for rows in (8, 16):
        cfg = AcceleratorConfig(rows=rows, cols=rows)
        cm = compiler.compile(net, config=cfg)
        est = cm.estimate()
        layers = []
        for name, layer in zip(cm.program.layer_names + ["END"], est.layers):
            util = layer.utilization(rows, rows)
            layers.append({"layer": name, "op": layer.op, "cycles": layer.cycles,
                           "macs": layer.macs, "utilization": util, "bound": layer.bound})
            print(f"{rows}x{rows:<5} {name:<6} {layer.op:<5} {layer.cycles:>8,} "
                  f"{layer.macs:>10,} {util:>6.3f}  {layer.bound}")
        convs = [entry for entry in layers if entry["op"] == "CONV"]
        figures["configs"][f"{rows}x{rows}"] = {
            "cycles_per_frame": est.cycles,
            "utilization": est.utilization,
            "first_conv_utilization": convs[0]["utilization"],
            "fc_head_utilization": (sum(e["macs"] for e in convs[-2:])
                                    / (sum(e["cycles"] for e in convs[-2:]) * rows * rows)),
            "frames_per_s_at_100MHz": 100e6 / est.cycles,
            "layers": layers,
        }
        entry = figures["configs"][f"{rows}x{rows}"]
        print(f"{rows}x{rows}: {est.cycles:,} cycles/frame, utilization {est.utilization:.3f} "
              f"(first conv {entry['first_conv_utilization']:.3f}, FC head "
              f"{entry['fc_head_utilization']:.3f})")

    cm = compiler.compile(net, config=AcceleratorConfig(rows=8, cols=8))
    x = cm.quantize_input(zoo.example_input("fmnist-cnn", args.frames).numpy())
    start = time.perf_counter()
    outs = machine.run_frames(cm.program, x)
    seconds = (time.perf_counter() - start) / len(x)
    exact = bool(np.array_equal(outs, cm.reference(x)))
    figures["simulator_seconds_per_frame"] = seconds
    figures["simulator_equals_reference"] = exact
    print(f"program simulator: {seconds * 1000:.1f} ms/frame on 8x8 "
          f"({len(x)} frames), == reference: {exact}")
    for key in ("8x8", "16x16"):
        ok = figures["configs"][key]["utilization"] >= 0.85
        print(f"[{'met' if ok else 'MISSED'}] {key} utilization >= 0.85")
    print(f"[{'met' if seconds < 1 else 'MISSED'}] simulator < 1 s/frame")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cycles.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'cycles.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
