"""What every stage script shares at its edges: flag checks, the exit on bad input or
Ctrl-C, and loading a stage script as a module (for tests and benchmarks)."""

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from worldmodels.episodes import DataError
from worldmodels.interrupt import Interrupted, stop_at_safe_points
from worldmodels.parallel import WorkerDied


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: float, *names: str) -> None:
    """parser.error (one line, exit 2) unless every named flag is >= minimum."""
    for name in names:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")


INTERRUPTED_EXIT = 130  # the shell's status for a run ended by Ctrl-C


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures (bad or missing input, a worker process that
    died) end with one line and exit status 1 instead of a traceback. The first Ctrl-C
    stops at the next safe point with the state saved, a second at once; both exit 130."""
    try:
        with stop_at_safe_points():
            main()
    except (DataError, WorkerDied) as error:
        sys.exit(f"error: {error}")
    except Interrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except KeyboardInterrupt:
        print("\nstopped at once: the last saved state is kept; re-run to resume", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)


def load_stage_script(name: str) -> ModuleType:
    """Import a numbered stage script such as "02_train_vae.py" (its file name is not a valid
    module name) without running its main()."""
    path = Path(__file__).resolve().parent.parent / name
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py").lstrip("0123456789_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
