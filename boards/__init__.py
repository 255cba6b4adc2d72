"""FPGA boards: the registry (platforms, clocks, UART, budgets) and bitstream builds."""

from .registry import BOARDS, DEFAULT_BOARD, Board, BoardError, check_fit, fit_problems, get, names

__all__ = ["BOARDS", "DEFAULT_BOARD", "Board", "BoardError", "check_fit", "fit_problems", "get",
           "names"]
