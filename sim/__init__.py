"""samoyed sim package."""
