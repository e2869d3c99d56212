"""Atomic writes: a reader never finds a half-written file under a final name.

Each writer writes to a temporary file in the destination folder and renames it over the
final name (rename is atomic within one filesystem). The temporary file's name holds the
writer's process id and host, so the stages can remove the ones a killed writer left behind.
A write that fails because the disk is full or the folder is not writable raises a
one-line OutputError naming the folder (in a worker process too); the file it would have
replaced is kept as it was.
"""

import errno
import io
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from worldmodels.errors import OutputError
from worldmodels.locks import lock_folder

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def _output_error(error: OSError, path: Path) -> Exception:
    """An OutputError that names the folder and the fix for a full disk or an unwritable
    folder; any other OSError as it is."""
    if error.errno in _NO_SPACE:
        return OutputError(f"{path.parent}: no space left on its disk (writing {path.name}); free some space and re-run "
                         "(files already written are whole and kept)")
    if error.errno in _NOT_WRITABLE:
        return OutputError(f"{path.parent}: cannot write {path.name} there ({os.strerror(error.errno)}); "
                         "make it a writable folder or choose another, then re-run")
    return error


def _file_mode() -> int:
    """Permissions a plain open() would give (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{socket.gethostname()}.", suffix=".tmp")
    except OSError as error:
        raise _output_error(error, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _output_error(error, path) from None
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


def prepare_output(folder: str | os.PathLike, needed_bytes: int = 0) -> Path:
    """Before long work starts: make ``folder``, prove that it takes a file, take its lock (one
    writer at a time: worldmodels/locks.py), remove the temporary files of killed writers, and
    check that its disk has ``needed_bytes`` free (what the stage's next write needs), or raise
    a one-line OutputError (or DataError, naming the process that holds the folder)."""
    folder = Path(folder)
    probe = folder / ".write-check"
    save_text(probe, "")
    probe.unlink(missing_ok=True)
    lock_folder(folder)
    remove_stale_temp_files(folder)
    require_free_space(folder, needed_bytes)
    return folder


def require_free_space(folder: str | os.PathLike, needed_bytes: int) -> None:
    """A one-line OutputError unless ``folder``'s disk has ``needed_bytes`` free: checked
    before work whose result could not be saved (an epoch of training)."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OutputError(f"{folder}: {free / 1e6:.1f} MB free on its disk, but the next write needs about "
                        f"{needed_bytes / 1e6:.1f} MB; free some space and re-run")


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


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """The bytes of a compressed .npz file of ``arrays`` (made where the work is done, written by the driver)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with atomic_open(path) as f:
        f.write(data)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Tensors and plain values only: what torch.load(weights_only=True) reads back."""
    buffer = io.BytesIO()  # torch's writer reports a full disk as a RuntimeError; a plain write says ENOSPC
    torch.save(obj, buffer)
    save_bytes(path, buffer.getbuffer())


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
