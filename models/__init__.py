"""Brevitas QAT model zoo, data sets and the trainer."""

from . import data, zoo  # noqa: F401
