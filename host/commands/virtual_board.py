"""`samoyed virtual-board`: serve the accelerator's link protocol over TCP."""

from __future__ import annotations

from hw import AcceleratorConfig


def _stop(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    import signal
    from host.virtual_board import MachineDevice, serve
    config = AcceleratorConfig.parse(args.config)
    # Ctrl-C and SIGTERM stop it even where it was started with SIGINT ignored (a
    # non-interactive shell's background job: Python then keeps SIGINT ignored).
    saved = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.engine == "rtl":
            return _serve_rtl(config, args)
        print(f"virtual board ({args.engine} engine, {config.label}) on {args.host}:"
              f"{args.port}; use backend board:socket://{args.host}:{args.port}; Ctrl-C "
              "stops it", flush=True)
        try:
            serve(MachineDevice(config), args.port, args.host)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _serve_rtl(config, args) -> int:
    """The accelerator RTL in Verilator behind the port, one client after another."""
    from host import rtl
    from host.errors import UsageError
    if args.host != "127.0.0.1":
        raise UsageError("the rtl engine listens on 127.0.0.1 only; drop --host")
    from hw.accelerator import check_config
    check_config(config)
    print(f"virtual board (rtl engine: hw.Accelerator({config.label}) in {args.simulator}; "
          "building it if needed) ...", flush=True)
    sim = rtl.RtlSimulation(config, args.simulator, port=args.port, connections=1 << 30,
                            accept_timeout=None)
    print(f"listening on 127.0.0.1:{sim.port}; use backend board:socket://127.0.0.1:{sim.port}"
          "; Ctrl-C stops it", flush=True)
    try:
        while sim.alive:
            sim.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close(timeout=10)
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("virtual-board", formatter_class=formatter,
                       help="serve the accelerator over TCP with the board's byte protocol",
                       description="A board you can run without one: the link protocol of "
                                   "docs/protocol.md over TCP, executing programs with the "
                                   "program simulator.")
    p.add_argument("--port", type=int, default=5555, help="TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--engine", choices=["machine", "rtl"], default="machine",
                   help="what executes programs: the program simulator, or the "
                        "accelerator's RTL (cycle-accurate, ~100k cycles/s)")
    p.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                   help="RTL simulator of the rtl engine")
    p.add_argument("--config", default="8x8", help="accelerator config, ROWSxCOLS")
    p.set_defaults(func=run)
