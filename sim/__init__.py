"""samoyed sim package: the integer reference, program simulator and testbenches."""
