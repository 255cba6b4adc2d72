"""The `samoyed` command: one subcommand per stage of the flow.

Each stage lives in `host/commands/<stage>.py` with `register(subparsers)`, which adds
its parser and sets `func`. Domain errors become one line on stderr and an exit code,
here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from models.errors import DataError, ZooError

from .errors import HostError, UsageError

# Stage modules in the order `samoyed --help` lists them.
STAGES = ["demo", "train", "compile", "inspect", "rtl", "run", "report", "virtual-board",
          "boards", "build"]

# Exit codes by error class; the first matching class wins. 1 is left for crashes.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (UsageError, 2),
    (DataError, 3),
    (ZooError, 4),
    (importlib.import_module("boards.registry").BoardError, 6),
    (importlib.import_module("compiler.errors").CompileError, 5),
    (importlib.import_module("boards.toolchain").ToolchainError, 7),
    (importlib.import_module("hw.config").ConfigError, 8),
    (HostError, 10),
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the descriptions' line breaks."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samoyed", formatter_class=HelpFormatter,
        description="Brevitas QAT ConvNets to a bit-exact FPGA accelerator.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for stage in STAGES:
        importlib.import_module(f"host.commands.{stage.replace('-', '_')}").register(
            sub, HelpFormatter)
    return parser


def exit_code(error: BaseException) -> int | None:
    """The exit code of a domain error, or None for anything else (a bug)."""
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our packages log at INFO (or DEBUG with -v); third-party libraries only warnings.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in ("models", "compiler", "hw", "sim", "host", "boards"):
        logging.getLogger(package).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("samoyed: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - mapped below, re-raised if not ours
        code = exit_code(error)
        if code is None:
            raise
        print(f"samoyed {args.command}: error: {error}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
