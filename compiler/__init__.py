"""samoyed compiler package."""
