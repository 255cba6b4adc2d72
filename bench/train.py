"""Accuracy and training-time figures of issue 2.

Trains fmnist-cnn (float twin, then 8-bit QAT; then 4-bit QAT from the same float twin)
and digits-cnn with their default settings, prints a table and writes
bench/results/train.json.

    .venv/bin/python bench/train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.train import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench-train", help="where models are written")
    parser.add_argument("--quick", action="store_true", help="1 epoch each (smoke run)")
    args = parser.parse_args()
    out = Path(args.out)
    quick = dict(epochs=1, qat_epochs=1) if args.quick else {}

    results = {}
    t0 = time.perf_counter()
    results["digits-cnn"] = train(TrainConfig(model="digits-cnn", **quick), out / "digits-8")
    results["fmnist-cnn-8"] = train(TrainConfig(model="fmnist-cnn", **quick), out / "fmnist-8")
    results["fmnist-cnn-4"] = train(
        TrainConfig(model="fmnist-cnn", weight_bits=4, act_bits=4,
                    float_init=str(out / "fmnist-8" / "float.pt"), **quick), out / "fmnist-4")
    total = time.perf_counter() - t0

    fm8, fm4, dg = results["fmnist-cnn-8"], results["fmnist-cnn-4"], results["digits-cnn"]
    figures = {
        "fmnist_float_accuracy": fm8["float_accuracy"],
        "fmnist_8bit_accuracy": fm8["quant_accuracy"],
        "fmnist_8bit_gap_points": 100 * (fm8["float_accuracy"] - fm8["quant_accuracy"]),
        "fmnist_4bit_accuracy": fm4["quant_accuracy"],
        "fmnist_4bit_gap_points": 100 * (fm8["float_accuracy"] - fm4["quant_accuracy"]),
        "fmnist_default_train_seconds": fm8["seconds"],
        "fmnist_4bit_qat_seconds": fm4["seconds"],
        "digits_accuracy_float": dg["float_accuracy"],
        "digits_accuracy_quant": dg["quant_accuracy"],
        "digits_train_seconds": dg["seconds"],
        "threads": fm8["threads"],
        "quick": args.quick,
        "bench_seconds": total,
    }
    targets = [
        ("fmnist float accuracy >= 92.5 %", figures["fmnist_float_accuracy"] >= 0.925),
        ("fmnist 8-bit within 0.5 point", figures["fmnist_8bit_gap_points"] <= 0.5),
        ("fmnist 4-bit within 1.5 points", figures["fmnist_4bit_gap_points"] <= 1.5),
        ("fmnist default training <= 600 s", figures["fmnist_default_train_seconds"] <= 600),
        ("digits >= 97 %", figures["digits_accuracy_quant"] >= 0.97),
        ("digits < 60 s", figures["digits_train_seconds"] < 60),
    ]
    figures["targets"] = {name: ok for name, ok in targets}
    print()
    print(f"{'figure':<34} value")
    for key, value in figures.items():
        if key != "targets":
            print(f"{key:<34} {value:.4f}" if isinstance(value, float) else f"{key:<34} {value}")
    for name, ok in targets:
        print(f"[{'met' if ok else 'MISSED'}] {name}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
