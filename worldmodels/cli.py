"""What every stage script shares at its edges: flag checks and the exit on bad input;
and loading a stage script as a module (for tests and benchmarks)."""

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from worldmodels.episodes import DataError
from worldmodels.parallel import WorkerDied


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: float, *names: str) -> None:
    """parser.error (one line, exit 2) unless every named flag is >= minimum."""
    for name in names:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures (bad or missing input, a worker process that
    died) end with one line and exit status 1 instead of a traceback."""
    try:
        main()
    except (DataError, WorkerDied) as error:
        sys.exit(f"error: {error}")


def load_stage_script(name: str) -> ModuleType:
    """Import a numbered stage script such as "02_train_vae.py" (its file name is not a valid
    module name) without running its main()."""
    path = Path(__file__).resolve().parent.parent / name
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py").lstrip("0123456789_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
