"""A full disk, for tests: Python imports this module at start-up in every process that has
this folder on PYTHONPATH (a stage and its spawned workers alike). Once the environment
names a file pattern in FULL_DISK_FILES, writing a file whose name matches it fails at
fsync with ENOSPC, as writes do on a full disk."""

import errno
import fnmatch
import os

_pattern = os.environ.get("FULL_DISK_FILES")
if _pattern:
    _fsync = os.fsync

    def _full_disk_fsync(fd: int) -> None:
        if fnmatch.fnmatch(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), _pattern):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _fsync(fd)

    os.fsync = _full_disk_fsync
