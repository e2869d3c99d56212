"""Atomic writes: a reader never finds a half-written file under a final name.

Each writer writes to a temporary file in the destination folder and renames it over the
final name (rename is atomic within one filesystem). The temporary file's name holds the
writer's process id and host, so the stages can remove the ones a killed writer left behind.
"""

import io
import os
import pickle
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def _file_mode() -> int:
    """Permissions a plain open() would give (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{socket.gethostname()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TEMP_NAME = re.compile(r"^\..+\.(\d+)@(.+)\.[^.]+\.tmp$")  # .<final name>.<pid>@<host>.<random>.tmp


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files in ``folder`` whose writer, on this host, no longer runs
    (it was killed before renaming); say how many. Others' files are left alone."""
    removed = 0
    for path in Path(folder).glob(".*.tmp"):
        match = _TEMP_NAME.match(path.name)
        if match and match[2] == socket.gethostname() and not _process_exists(int(match[1])):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        print(f"removed {removed} temporary files that a stopped run left in {folder}")
    return removed


def save_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> None:
    with atomic_open(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def save_pickle(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        pickle.dump(obj, f)


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
