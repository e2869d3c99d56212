"""One writer per output folder: a stage that writes into a folder holds its lock until it ends.

Two runs in one folder at once (one resuming, one with --restart) would overwrite each other's
files, and each would report what it wrote as its own. The lock is an advisory ``flock`` on
``<folder>/.lock``: the kernel drops it when its holder ends, however it ends (a killed run
leaves no lock behind). The file holds the holder's process id, so the second run can say
who holds the folder. A process may take the same folder again (a script calling several
stages in one process does); ``release_all`` gives every lock back (``run_stage`` calls it).
"""

import fcntl
import os
from pathlib import Path

from worldmodels.errors import DataError

LOCK_FILE = ".lock"

_held: dict[Path, int] = {}  # folder (resolved) -> the open file descriptor holding its lock


def lock_folder(folder: str | os.PathLike) -> None:
    """Take ``folder``'s lock for this process, or a DataError naming the process that holds it."""
    folder = Path(folder).resolve()
    if folder in _held:
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DataError(f"{folder}: in use by process {holder}, which is writing there; wait for it to end "
                        "(or stop it), or choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = fd


def release_all() -> None:
    """Give back every folder lock this process holds."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)  # closing the descriptor drops the flock
