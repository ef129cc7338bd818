"""The command line (the only argument parser)."""
from polymodal.cli.main import main

__all__ = ["main"]
