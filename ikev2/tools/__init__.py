"""Offline tools behind the CLI: capture readers and the `decode` command."""
