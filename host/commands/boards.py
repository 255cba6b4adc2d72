"""`samoyed boards`: the supported boards, their budgets and the configs that fit."""

from __future__ import annotations


def _use(need: int, have: int, estimated: bool = False) -> str:
    return f"{'~' if estimated else ''}{need:,}/{have:,}{'' if need <= have else '!'}"


def run(args) -> int:
    import boards
    from boards.fit import CALIBRATED_AT, LUT_MARGIN, estimate
    from boards.registry import largest_fit, shortfalls
    print(f"{'board':<15} {'device':<13} {'config':<7} {'LUT':>15} {'DSP':>8} {'BRAM':>7}  "
          f"{'fits':<4} largest fit")
    for board in boards.BOARDS.values():
        cfg = board.config
        e = estimate(cfg, board.family)
        short = shortfalls(board, cfg, e)
        best = largest_fit(board)
        if short:
            verdict = "no"
            note = ("no config fits: " if best is None else f"{best.label}; ") + \
                f"{cfg.label} needs " + ", ".join(map(str, short))
        else:
            verdict, note = "yes", best.label if best is not None else ""
        print(f"{board.name:<15} {board.device:<13} {cfg.label:<7} "
              f"{_use(e.luts, board.luts, True):>15} {_use(e.dsps, board.dsps):>8} "
              f"{_use(e.brams, board.brams):>7}  {verdict:<4} {note}")
    print(f"LUT = {', '.join(sorted({f.lut_cell for f in _families(boards)}))}, estimated "
          f"(±{LUT_MARGIN:.0%}); DSP and BRAM are exact counts of hw at {CALIBRATED_AT} "
          f"(boards/fit.py). Depths are each board's; `samoyed build --config RxC` changes "
          f"only the array size.")
    print(f"default board: {boards.DEFAULT_BOARD}")
    return 0


def _families(boards):
    from boards.fit import FAMILIES
    return [FAMILIES[b.family] for b in boards.BOARDS.values()]


def register(sub, formatter) -> None:
    p = sub.add_parser("boards", formatter_class=formatter,
                       help="list the supported boards and what fits them",
                       description="Boards by name with their device, default accelerator "
                                   "config, its estimated use of LUTs, multiplier blocks "
                                   "(DSP) and block RAMs against the device's budget "
                                   "(used/available), whether it fits, and the largest "
                                   "array that fits with the board's memory depths.")
    p.set_defaults(func=run)
