"""Host backend throughput (issue 6): the bit-exact torch backend against the float twin
in plain PyTorch and Brevitas's own fake-quant forward, measured in the same run.

    .venv/bin/python bench/host.py [--model runs/demo] [--images 4096] [--threads 2]
                                   [--board-frames 100] [--rtl-frames 3] [--no-rtl]

Prints images/s of each and the ratios, then the virtual board's frames/s and per-frame
latency over loopback with each engine (`samoyed virtual-board --engine machine|rtl`, a
separate process, driven by `board:socket://127.0.0.1:PORT`); writes
bench/results/host.json. The machine's load average is recorded with the figures: the
ratios are measured in the same run, the absolute rates move with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def virtual_board(cm, x_int, engine: str, frames: int, config: str) -> dict:
    """Frames/s and per-frame latency of `board:socket://` against a virtual board."""
    port = free_port()
    cmd = [sys.executable, "-m", "host.cli", "virtual-board", "--engine", engine,
           "--port", str(port), "--config", config]
    server = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:          # the rtl engine builds the design first
            if "use backend board:socket://" in line:
                break
        else:
            raise SystemExit(f"virtual board ({engine}) did not start: {server.wait()}")
        start = time.perf_counter()
        sess = host.Session(cm, f"board:socket://127.0.0.1:{port}")
        load_s = time.perf_counter() - start
        latencies, exact = [], True
        for i in range(frames):
            start = time.perf_counter()
            out = sess.backend.run_ints(x_int[i:i + 1])
            latencies.append(time.perf_counter() - start)
            exact &= bool(np.array_equal(out, cm.reference(x_int[i:i + 1])))
        resends = sess.backend.link.resends
        sess.close()
    finally:
        server.terminate()
        server.wait(30)
    lat = np.array(latencies)
    return {"engine": engine, "config": config, "frames": frames, "bit_exact": exact,
            "load_weights_s": load_s, "frames_per_s": frames / lat.sum(),
            "latency_ms": {"median": 1e3 * float(np.median(lat)),
                           "p90": 1e3 * float(np.percentile(lat, 90)),
                           "max": 1e3 * float(lat.max())},
            "resends": resends}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a `samoyed train` output directory")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="64,256,1024",
                        help="batch sizes to try; each of the three runs at its fastest")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--board-frames", type=int, default=100,
                        help="frames through the virtual board's machine engine")
    parser.add_argument("--rtl-frames", type=int, default=3,
                        help="frames through the virtual board's rtl engine (Verilator)")
    parser.add_argument("--no-rtl", action="store_true", help="skip the rtl engine")
    args = parser.parse_args()
    load_before = os.getloadavg()
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
    batches = [int(b) for b in args.batches.split(",")]

    def batched(model, batch):
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                model(x[i:i + batch])

    def backend(batch):
        sess.backend.batch_size = batch
        sess.backend.run_ints(x_int)

    exact = bool(np.array_equal(sess.backend.run_ints(x_int[:256]), cm.reference(x_int[:256])))
    # Each at every batch size, interleaved so that load from elsewhere hits all three.
    per_batch = {"torch_backend": {}, "float_twin": {}, "brevitas_fake_quant": {}}
    for batch in batches:
        per_batch["torch_backend"][batch] = best_rate(lambda: backend(batch), args.images)
        per_batch["float_twin"][batch] = best_rate(lambda: batched(twin, batch), args.images)
        per_batch["brevitas_fake_quant"][batch] = best_rate(lambda: batched(net, batch),
                                                            args.images, repeats=1)
    rates = {name: max(by_batch.values()) for name, by_batch in per_batch.items()}
    best_batch = {name: max(by_batch, key=by_batch.get) for name, by_batch in per_batch.items()}
    figures = {"model": "fmnist-cnn", "images": args.images, "threads": args.threads,
               "device": args.device, "bit_exact": exact,
               "images_per_s": rates, "best_batch": best_batch,
               "images_per_s_by_batch": per_batch,
               "ratio_vs_float_twin": rates["torch_backend"] / rates["float_twin"],
               "ratio_vs_brevitas": rates["torch_backend"] / rates["brevitas_fake_quant"],
               "layer_arithmetic": sess.backend.arithmetic,
               "fused_pool_requant_layers": sess.backend.fused_layers}
    figures["load_average_before"] = load_before
    boards = [("machine", args.board_frames)] + ([] if args.no_rtl else [("rtl", args.rtl_frames)])
    figures["virtual_board"] = []
    for engine, frames in boards:
        print(f"virtual board, {engine} engine: {frames} frames ...", flush=True)
        vb = virtual_board(cm, x_int, engine, frames, cm.config.label)
        figures["virtual_board"].append(vb)
    for name, rate in rates.items():
        print(f"{name:<22} {rate:>10,.0f} images/s (batch {best_batch[name]})")
    print(f"torch backend / float twin: {figures['ratio_vs_float_twin']:.2f}x (target >= 1.0)")
    print(f"torch backend / Brevitas:   {figures['ratio_vs_brevitas']:.1f}x (target >= 10)")
    print(f"bit-exact with cm.reference: {exact}; layer arithmetic {figures['layer_arithmetic']}; "
          f"pool+requant fused in {figures['fused_pool_requant_layers']}")
    for vb in figures["virtual_board"]:
        lat = vb["latency_ms"]
        print(f"virtual board {vb['engine']:<8} {vb['frames_per_s']:>8.2f} frames/s, latency "
              f"median {lat['median']:.1f} ms (p90 {lat['p90']:.1f}), weights loaded in "
              f"{vb['load_weights_s']:.1f} s, bit-exact {vb['bit_exact']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "host.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'host.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
