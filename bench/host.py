"""Host backend throughput (issue 6): the bit-exact torch backend against the float twin
in plain PyTorch and Brevitas's own fake-quant forward, measured in the same run.

    .venv/bin/python bench/host.py [--model runs/demo] [--images 4096] [--threads 2]

Prints images/s of each and the ratios; writes bench/results/host.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import compiler  # noqa: E402
import host  # noqa: E402
from models import zoo  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def best_rate(fn, images: int, repeats: int = 3) -> float:
    """Images per second of the fastest of `repeats` runs of fn()."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return images / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a `samoyed train` output directory")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model:
        from models.train import load_float_twin, load_trained
        net, twin = load_trained(args.model)[0], load_float_twin(args.model)
    else:
        net = zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn")
        twin = zoo.build_float("fmnist-cnn")
    twin.eval()
    cm = compiler.compile(net)
    x = zoo.example_input("fmnist-cnn", args.images)
    x_int = cm.quantize_input(x.numpy())
    sess = host.Session(cm, backend=f"torch:{args.device}")
    sess.backend.batch_size = args.batch

    def batched(model):
        with torch.inference_mode():
            for i in range(0, len(x), args.batch):
                model(x[i:i + args.batch])

    exact = bool(np.array_equal(sess.backend.run_ints(x_int[:256]), cm.reference(x_int[:256])))
    rates = {
        "torch_backend": best_rate(lambda: sess.backend.run_ints(x_int), args.images),
        "float_twin": best_rate(lambda: batched(twin), args.images),
        "brevitas_fake_quant": best_rate(lambda: batched(net), args.images, repeats=1),
    }
    figures = {"model": "fmnist-cnn", "images": args.images, "threads": args.threads,
               "device": args.device, "batch": args.batch, "bit_exact": exact,
               "images_per_s": rates,
               "ratio_vs_float_twin": rates["torch_backend"] / rates["float_twin"],
               "ratio_vs_brevitas": rates["torch_backend"] / rates["brevitas_fake_quant"],
               "layer_arithmetic": sess.backend.arithmetic}
    for name, rate in rates.items():
        print(f"{name:<22} {rate:>10,.0f} images/s")
    print(f"torch backend / float twin: {figures['ratio_vs_float_twin']:.2f}x (target >= 1.0)")
    print(f"torch backend / Brevitas:   {figures['ratio_vs_brevitas']:.1f}x (target >= 10)")
    print(f"bit-exact with cm.reference: {exact}; layer arithmetic {figures['layer_arithmetic']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "host.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'host.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
