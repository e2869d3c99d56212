"""Atomic writes: a reader never finds a half-written file under a final name.

Each writer writes to a temporary file in the destination folder and renames it over the
final name (rename is atomic within one filesystem).
"""

import io
import os
import pickle
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
