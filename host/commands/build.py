"""`samoyed build`: a board's bitstream with the open-source flow, and its report."""

from __future__ import annotations

import dataclasses


def run(args) -> int:
    import boards
    from boards.build import build
    from hw import AcceleratorConfig, ConfigError

    from ..errors import UsageError

    board = boards.get(args.board)
    config = board.config
    if args.config is not None:
        try:
            rc = AcceleratorConfig.parse(args.config)
        except ConfigError as error:
            raise UsageError(str(error)) from None
        # The array size from the command line, the memory depths the board has room for.
        config = dataclasses.replace(config, rows=rc.rows, cols=rc.cols)
    model = None
    if args.model is not None:
        import compiler
        model = compiler.load(args.model)
    report = build(board, config, args.out, clock_mhz=args.clock_mhz, baud=args.baud,
                   model=model, seed=args.seed)
    print(f"{report['board']} {report['config']} at {report['clock_mhz']:g} MHz: Fmax "
          f"{report['fmax_mhz']} MHz, timing {'met' if report['timing_met'] else 'NOT met'}; "
          f"{report['luts']:,} LUTs, {report['ffs']:,} FFs, {report['dsps']} DSPs, "
          f"{report['brams']} BRAMs; {report['seconds']:.0f} s")
    if "frames_per_s" in report:
        print(f"{report['model']}: {report['cycles_per_frame']:,} cycles/frame, "
              f"{report['frames_per_s']:,.1f} frames/s at {report['clock_mhz']:g} MHz; the "
              f"UART carries {report['link_frames_per_s']:,.1f} "
              f"({report['link_bytes_per_frame']['to_board']:,} bytes in per frame), so "
              f"{report['end_to_end_frames_per_s']:,.1f} frames/s end to end")
        other = report.get("other_packing")
        if other and other["end_to_end_frames_per_s"] > report["end_to_end_frames_per_s"]:
            how = "without --no-k-pack" if other["k_pack"] else "with --no-k-pack"
            print(f"compiled {how} (`samoyed compile`), it would reach "
                  f"{other['end_to_end_frames_per_s']:,.1f} frames/s end to end "
                  f"({other['cycles_per_frame']:,} cycles/frame, "
                  f"{other['link_bytes_per_frame']['to_board']:,} bytes in per frame)")
    print(f"wrote {args.out}/{report['bitstream']} and {args.out}/report.json "
          f"(UART {report['baud']} baud)")
    return 0


def register(sub, formatter) -> None:
    import boards
    p = sub.add_parser("build", formatter_class=formatter,
                       help="build a bitstream for a board with the yowasp FPGA tools",
                       description="Fit check, then synthesis (yosys), place&route (nextpnr) "
                                   "and pack for BOARD, with no vendor tools. Writes the "
                                   "bitstream and OUT/report.json (Fmax, timing, resources, "
                                   "build time, and frames/s for --model).")
    p.add_argument("--board", default=boards.DEFAULT_BOARD, choices=boards.names(),
                   help="target board (`samoyed boards` lists them)")
    p.add_argument("--config", default=None, metavar="RxC",
                   help="systolic array size, e.g. 8x8, with the board's memory depths (None: the "
                        "board's default config)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--model", default=None, metavar="FILE.samoyed",
                   help="compiled model: check it fits and estimate its frames/s")
    p.add_argument("--clock-mhz", type=float, default=None, metavar="F",
                   help="accelerator clock from the PLL (None: the config's clock_mhz)")
    p.add_argument("--baud", type=int, default=None,
                   help="UART rate (None: 1000000, what the host opens the port at)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="nextpnr placement seed (None: the board's, that of the build its "
                        "clock comes from; placement and so Fmax vary with it)")
    p.set_defaults(func=run)
