"""The ``relumix`` command line: one module per command in this package, joined here.

Each command module has ``register(subparsers)``, which adds its options, and a run function that imports torch and
the pipeline only when the command runs, so ``relumix --help`` answers at once. Mistakes in the input (a wrong file,
an existing destination, a bad option) end with one ``error: ...`` line and exit status 2, not a traceback; set
``RELUMIX_DEBUG=1`` to see the traceback anyway (:func:`~relumix_core.cli.common.run_command`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import batch, checkpoint_tools, convert, demo, evaluate, plan, relight, synth, train
from .common import exit_code, run_command

#: In the order ``relumix --help`` lists them.
COMMANDS = (convert, checkpoint_tools, relight, synth, batch, evaluate, train, plan, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relumix",
        description="ReLumix video relighting: relight videos, checkpoint tools, training, evaluation and a demo.",
    )
    parser.add_argument("--version", action="version", version=f"relumix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``relumix`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:
        return exit_code(stop)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
