"""samoyed hw package."""
