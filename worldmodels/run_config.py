"""What produced a result: every run of a stage records its resolved settings (all flags, the
paths as absolute paths, the commit of this code and whether it had uncommitted changes, the
versions of the libraries that shape the numbers) in a JSON file beside what it wrote: a
training stage's beside its log (vae_log.csv -> vae_config.json, controller_log.csv ->
controller_config.json, evaluation.csv -> evaluation_config.json), collection's and
encoding's in their output folders (collect_config.json, encode_config.json). A resumed or
repeated run adds its own entry to the file's "runs", so a result that took several runs
names each of them."""

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from worldmodels.atomic import save_text

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("torch", "numpy", "gymnasium", "box2d", "cma")  # what can change a measured figure


def config_path(log_path: str | Path) -> Path:
    """<name>_log.csv -> <name>_config.json in the same folder."""
    log_path = Path(log_path)
    return log_path.with_name(log_path.name.removesuffix("_log.csv").removesuffix(".csv") + "_config.json")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict:
    """The commit of this code ("unknown" outside a git checkout) and whether files differ from it."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit or "unknown", "uncommitted_changes": bool(status) if status is not None else None}


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _resolved(name: str, value: object) -> object:
    """Folder and file flags (--*-dir, --init-from, --policy) as absolute paths, so a config
    names the files it used."""
    if isinstance(value, str) and value and (name.endswith("_dir") or name in ("init_from", "policy")):
        return str(Path(value).resolve())
    return value


def run_record(args: argparse.Namespace, script: str) -> dict:
    """One run's entry: the script, every flag, the code and library versions, the time."""
    return {"script": script, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "flags": {name: _resolved(name, value) for name, value in sorted(vars(args).items())},
            **code_version(), "versions": _versions()}


def write_run_config(path: str | Path, args: argparse.Namespace, script: str) -> Path:
    """Add this run to the config file ``path`` (atomically); returns it. A file that cannot be
    read as one is not lost: it is moved aside, to <name>.json.unreadable."""
    path = Path(path)
    runs = []
    if path.exists():
        try:
            runs = json.loads(path.read_text())["runs"]
            if not isinstance(runs, list):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            path.replace(path.with_name(path.name + ".unreadable"))
            runs = []
    runs.append(run_record(args, script))
    save_text(path, json.dumps({"runs": runs}, indent=1, default=str) + "\n")
    return path
