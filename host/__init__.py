"""Host side of samoyed: the runtime Session, transports, the CLI and reports."""
