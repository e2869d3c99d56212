"""What every stage script shares at its edges: flag checks, the exit on bad input,
Ctrl-C or SIGTERM, and loading a stage script as a module (for tests and benchmarks)."""

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from worldmodels.errors import DataError
from worldmodels.interrupt import Interrupted, stop_at_safe_points, stop_requested, stopped_exit_status
from worldmodels.locks import release_all
from worldmodels.parallel import TASK_TIMEOUT, WorkerDied, WorkerPool, make_pool


def finite_float(text: str) -> float:
    """argparse type for every float flag: a number, neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


MAX_SEED = 2**31 - 1  # every seed flag: numpy, torch and gymnasium all take 0 .. this (and a few more)


def seed_value(text: str) -> int:
    """argparse type for every seed flag: an integer from 0 to MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED}, got {value}")
    return value


def require_folders(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """parser.error (one line, exit 2) if a named folder flag names something that is not a folder."""
    for name in names:
        path = Path(getattr(args, name))
        if path.exists() and not path.is_dir():
            parser.error(f"--{name.replace('_', '-')}: {path} is a file, not a folder")


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, minimum: float, *names: str) -> None:
    """parser.error (one line, exit 2) unless every named flag is >= minimum."""
    for name in names:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")


def add_pool_flags(parser: argparse.ArgumentParser, workers: int) -> None:
    """--workers, --ray [ADDRESS] and --task-timeout: where a stage's parallel work runs (worldmodels/parallel)."""
    parser.add_argument("--workers", type=int, default=workers,
                        help="tasks at once (0: one process per core here; with --ray, one per CPU of the cluster)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run the parallel work on a Ray cluster: auto (started here with `ray start`), HOST:PORT, "
                             "local (a new instance), or nothing (RAY_ADDRESS if set, else a new instance)")
    parser.add_argument("--task-timeout", type=finite_float, default=TASK_TIMEOUT,
                        help="with --ray: seconds a task may run before it is stopped and run again")


def check_pool_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    require_at_least(parser, args, 0, "workers")
    if args.task_timeout <= 0:
        parser.error(f"--task-timeout must be positive, got {args.task_timeout}")


def pool_from_args(args: argparse.Namespace) -> WorkerPool:
    return make_pool(args.workers, args.ray, args.task_timeout)


INTERRUPTED_EXIT = 130  # the shell's status for a run ended by Ctrl-C (SIGTERM: 143)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected failures (bad or missing input, a full disk, a worker
    process that died) end with one line and exit status 1 instead of a traceback. The
    first Ctrl-C or SIGTERM stops at the next safe point with the state saved, a second at
    once; the exit status is 128 + the signal's number (130, 143)."""
    with stop_at_safe_points():
        try:
            main()
            if stop_requested():  # the signal came after the last safe point: the work is done, but a script running
                # the stages (a profile) must still stop, so the exit status says the run was stopped
                raise Interrupted("the stage finished and saved its work before the stop could take effect")
        except (DataError, WorkerDied) as error:
            sys.exit(f"error: {error}")
        except Interrupted as stop:
            print(f"stopped: {stop}", file=sys.stderr)
            sys.exit(stopped_exit_status())
        except KeyboardInterrupt:
            print("\nstopped at once: the last saved state is kept; re-run to resume", file=sys.stderr)
            sys.exit(stopped_exit_status())
        finally:
            release_all()  # the output folders' locks (the process's end would drop them too)


def load_stage_script(name: str) -> ModuleType:
    """Import a numbered stage script such as "02_train_vae.py" (its file name is not a valid
    module name) without running its main()."""
    path = Path(__file__).resolve().parent.parent / name
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py").lstrip("0123456789_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
