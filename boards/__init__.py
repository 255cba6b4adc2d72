"""samoyed boards package."""
