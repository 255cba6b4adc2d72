"""`samoyed virtual-board`: serve the accelerator's link protocol over TCP."""

from __future__ import annotations

from hw import AcceleratorConfig


def run(args) -> int:
    from host.virtual_board import MachineDevice, serve
    config = AcceleratorConfig.parse(args.config)
    print(f"virtual board ({args.engine} engine, {config.label}) on {args.host}:{args.port}; "
          f"use backend board:socket://{args.host}:{args.port}; Ctrl-C stops it", flush=True)
    serve(MachineDevice(config), args.port, args.host)
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("virtual-board", formatter_class=formatter,
                       help="serve the accelerator over TCP with the board's byte protocol",
                       description="A board you can run without one: the link protocol of "
                                   "docs/protocol.md over TCP, executing programs with the "
                                   "program simulator.")
    p.add_argument("--port", type=int, default=5555, help="TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--engine", choices=["machine"], default="machine",
                   help="what executes programs (the RTL engine comes with issue 5)")
    p.add_argument("--config", default="8x8", help="accelerator config, ROWSxCOLS")
    p.set_defaults(func=run)
