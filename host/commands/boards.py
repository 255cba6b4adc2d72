"""`samoyed boards`: the supported boards, their budgets and the configs that fit."""

from __future__ import annotations


def run(args) -> int:
    import boards
    from boards.registry import memory_bytes
    print(f"{'board':<15} {'device':<13} {'LUTs':>7} {'DSPs':>5} {'BRAM KiB':>9}  "
          f"{'default':<7} {'memory KiB':>10}  fits")
    for board in boards.BOARDS.values():
        cfg = board.config
        problems = boards.fit_problems(board, cfg)
        print(f"{board.name:<15} {board.device:<13} {board.luts:>7,} {board.dsps:>5} "
              f"{board.bram_bytes / 1024:>9.0f}  {cfg.label:<7} {memory_bytes(cfg) / 1024:>10.1f}"
              f"  {'yes' if not problems else '; '.join(problems)}")
    print(f"default board: {boards.DEFAULT_BOARD}")
    return 0


def register(sub, formatter) -> None:
    p = sub.add_parser("boards", formatter_class=formatter,
                       help="list the supported boards and what fits them",
                       description="Boards by name with their device, resource budget, "
                                   "default accelerator config and whether it fits.")
    p.set_defaults(func=run)
