"""``relumix eval`` called from the tests, through the same error handling as the ``relumix`` command."""

from __future__ import annotations

import argparse

from relumix_core.cli.common import run_command
from relumix_core.cli.evaluate import add_eval_arguments, run_eval


def eval_main(*argv: str) -> int:
    """Run ``relumix eval ARGV``; returns its exit status (errors print one line, as on the command line)."""
    parser = argparse.ArgumentParser(prog="relumix eval")
    add_eval_arguments(parser)
    return run_command(run_eval, parser.parse_args(list(argv)))
