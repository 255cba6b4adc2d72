"""CLI stages of `samoyed`; each module has `register(subparsers, formatter)`."""
