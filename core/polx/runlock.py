"""One writer per directory: an exclusive ``flock`` on a lock file that names the holder's PID.

Two ``polx train --resume`` of one run, or one sweep started twice, would otherwise both write
the same config, checkpoints and log. The kernel releases an ``flock`` when its process dies, so
a killed run never leaves a stale lock behind; the file itself is removed on release. (A
process that opened the file just before it was removed may lock the removed file: ``acquire``
checks that the file it locked is still the one at the path, and tries again if not.)

Cheap to import (no torch): ``polx sweep`` uses it to leave alone the cells another process runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from polx.errors import PolxError

RUN_LOCK = ".polx.lock"  # inside a run directory


class LockHeldError(PolxError):
    """Another process holds the lock (exit 1: a runtime conflict, not a bad argument)."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def holder(path: Path) -> int | None:
    """The PID holding the lock file ``path`` (None when the file is absent or nobody holds it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return _read_pid(path) or -1  # held, PID not yet written
        raise
    finally:
        os.close(fd)
    return None


def run_dir_holder(run_dir: Path) -> int | None:
    """The PID of the ``polx train`` writing ``run_dir`` now, or None."""
    return holder(Path(run_dir) / RUN_LOCK)


class FileLock:
    """``acquire(path, what)`` takes the lock or raises ``LockHeldError`` naming the holder; ``release()`` is idempotent."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, path: Path, what: str) -> "FileLock":
        path = Path(path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                pid = _read_pid(path)
                who = f"PID {pid}" if pid else "another process"
                raise LockHeldError(
                    f"{what} is in use by another polx process ({who}, lock file {str(path)!r}); "
                    f"wait for it to finish or stop it{f' (kill {pid})' if pid else ''}, then run this again",
                    pid,
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # locked a file its previous holder had just removed: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.path, self._fd = path, fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
