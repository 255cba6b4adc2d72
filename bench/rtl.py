"""RTL figures of issue 5: cycles per frame, utilization, simulation speed, build time.

fmnist-cnn (trained weights from --model DIR, else a calibrated untrained net: cycles do
not depend on the weights) runs on `hw.Accelerator` in Verilator and Icarus through the
host link, exactly as `host.Session(cm, backend="rtl")` does. For each simulator:

- build time of the design (a fresh build in a temporary cache, unless --reuse-build);
- time to load weights, parameters and program over the link;
- per frame: the RTL cycle counter, the model's estimate, the MAC utilization, and the
  wall time of the run alone (RUN + STATUS polls: the design runs free) and of the whole
  frame (input write + run + output read);

then prints a table and writes bench/results/rtl.json.

    .venv/bin/python bench/rtl.py [--model runs/demo] [--frames 4] [--config 8x8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import compiler  # noqa: E402
from hw import AcceleratorConfig  # noqa: E402
from host import protocol as P  # noqa: E402
from host import rtl  # noqa: E402
from host.backends.board import BoardBackend  # noqa: E402
from models import zoo  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def load_net(model_dir):
    if model_dir:
        from models.train import load_trained
        return load_trained(model_dir)[0]
    return zoo.calibrate(zoo.build("fmnist-cnn"), "fmnist-cnn", batch=32)


def measure(cm, x, simulator, reuse_build):
    figures = {"simulator": simulator}
    cache = None if reuse_build else tempfile.mkdtemp(prefix="samoyed-bench-build-")
    saved = os.environ.get("SAMOYED_SIM_CACHE")
    if cache:
        os.environ["SAMOYED_SIM_CACHE"] = cache
    try:
        started = time.perf_counter()
        rtl.build(cm.config, simulator)
        figures["build_seconds"] = time.perf_counter() - started
        sim = rtl.RtlSimulation(cm.config, simulator)
    finally:
        if cache:
            if saved is None:
                os.environ.pop("SAMOYED_SIM_CACHE", None)
            else:
                os.environ["SAMOYED_SIM_CACHE"] = saved
    started = time.perf_counter()
    board = BoardBackend(cm, sim.url, response_timeout=120.0, attempts=2)
    figures["load_seconds"] = time.perf_counter() - started
    frames = []
    R = cm.config.rows
    inp, out = cm.program.input, cm.program.output
    estimate = cm.estimate()
    try:
        for frame in x:
            t0 = time.perf_counter()
            board.link.write(P.Space.ACTIVATIONS, inp.base * R, cm.program.pack_input(frame)
                             .tobytes())
            t1 = time.perf_counter()
            status = board.link.run(0, 2 * estimate.cycles + 10_000, poll_interval=0.002)
            t2 = time.perf_counter()
            raw = board.link.read(P.Space.ACTIVATIONS, out.base * R, out.words(R) * R)
            t3 = time.perf_counter()
            act = np.zeros((out.base + out.words(R), R), dtype=np.uint8)
            act[out.base:] = np.frombuffer(raw, np.uint8).reshape(-1, R)
            got = cm.program.read_output(act)
            cycles = status.counters["cycles"]
            frames.append({
                "cycles": cycles, "macs": status.counters["macs"],
                "run_seconds": t2 - t1, "frame_seconds": t3 - t0,
                "equal_reference": bool(np.array_equal(got, cm.reference(frame[None])[0])),
            })
    finally:
        board.close()
        sim.close()
    cycles = frames[0]["cycles"]
    run_s = sum(f["run_seconds"] for f in frames)
    frame_s = sum(f["frame_seconds"] for f in frames)
    figures.update({
        "frames": frames,
        "cycles_per_frame": cycles,
        "estimate_cycles": estimate.cycles,
        "cycles_vs_estimate": cycles / estimate.cycles - 1,
        "utilization": frames[0]["macs"] / (cycles * cm.config.rows * cm.config.cols),
        "run_cycles_per_second": sum(f["cycles"] for f in frames) / run_s,
        "frames_per_second": len(frames) / frame_s,
        "all_equal_reference": all(f["equal_reference"] for f in frames),
    })
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a `samoyed train` output directory")
    parser.add_argument("--config", default="8x8", help="array size (default 8x8)")
    parser.add_argument("--frames", type=int, default=4, help="frames on Verilator (default 4)")
    parser.add_argument("--icarus-frames", type=int, default=1,
                        help="frames on Icarus (default 1; 0 skips Icarus)")
    parser.add_argument("--reuse-build", action="store_true",
                        help="use the cached builds instead of timing fresh ones")
    args = parser.parse_args()

    config = AcceleratorConfig.parse(args.config)
    cm = compiler.compile(load_net(args.model), config=config)
    x = cm.quantize_input(zoo.example_input("fmnist-cnn", max(args.frames, 1)).numpy())
    runs = [("verilator", args.frames)]
    if args.icarus_frames:
        runs.append(("icarus", args.icarus_frames))
    results = {"model": "fmnist-cnn", "config": config.label, "simulators": {}}
    for simulator, n in runs:
        print(f"{simulator}: building and running {n} frame(s) ...", flush=True)
        results["simulators"][simulator] = measure(cm, x[:n], simulator, args.reuse_build)

    print(f"\nfmnist-cnn on {config.label}")
    print(f"{'simulator':<10} {'build s':>8} {'load s':>7} {'cycles/frame':>13} "
          f"{'model':>8} {'diff':>7} {'util':>6} {'run cyc/s':>10} {'frames/s':>9}  exact")
    for name, f in results["simulators"].items():
        print(f"{name:<10} {f['build_seconds']:>8.1f} {f['load_seconds']:>7.1f} "
              f"{f['cycles_per_frame']:>13,} {f['estimate_cycles']:>8,} "
              f"{f['cycles_vs_estimate']:>+7.2%} {f['utilization']:>6.3f} "
              f"{f['run_cycles_per_second']:>10,.0f} {f['frames_per_second']:>9.2f}  "
              f"{f['all_equal_reference']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "rtl.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {path}")
    return 0 if all(f["all_equal_reference"] for f in results["simulators"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
