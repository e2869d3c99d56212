"""What every stage script shares at its edges: flag checks and the exit on bad input."""

import argparse
import sys
from typing import Callable

from worldmodels.episodes import DataError


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: float, *names: str) -> None:
    """parser.error (one line, exit 2) unless every named flag is >= minimum."""
    for name in names:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures (bad or missing input) end with one line
    and exit status 1 instead of a traceback."""
    try:
        main()
    except DataError as error:
        sys.exit(f"error: {error}")
