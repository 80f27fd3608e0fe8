"""One writer per directory: an exclusive ``flock``, and a file naming the holder's PID.

Two ``polx train --resume`` of one run, or one sweep started twice, would otherwise both write
the same config, checkpoints and log. The kernel releases an ``flock`` when its process dies, so
a killed run never leaves a stale lock behind.

- ``RunDirLock`` locks a run directory itself (its open directory descriptor), so taking the
  lock writes nothing: a command refused later, for bad input, leaves the directory untouched.
  ``write_pid()`` then records the holder in ``<run>/.polx.lock`` once the run starts writing.
- ``FileLock`` locks a lock file (a sweep's shard), removed on release. A process that opened
  the file just before it was removed may lock the removed file: ``acquire`` checks that the
  file it locked is still the one at the path, and tries again if not.

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


def _busy(exc: OSError) -> bool:
    return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)


def _held_message(what: str, pid: int | None, where: Path) -> str:
    who = f"PID {pid}" if pid else "another process"
    return (
        f"{what} is in use by another polx process ({who}, see {str(where)!r}); "
        f"wait for it to finish or stop it{f' (kill {pid})' if pid else ''}, then run this again"
    )


def _lock_or_raise(fd: int, what: str, pid_file: Path) -> None:
    """An exclusive flock on ``fd``, or ``LockHeldError`` naming the PID in ``pid_file`` (``fd`` then closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if not _busy(exc):
            raise
        pid = _read_pid(pid_file)
        raise LockHeldError(_held_message(what, pid, pid_file), pid) from None


def _probe(target: Path, flags: int, pid_file: Path) -> int | None:
    """The PID holding ``target``'s flock (-1 when held but not yet named), or None when free or absent."""
    try:
        fd = os.open(target, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if _busy(exc):
            return _read_pid(pid_file) or -1
        raise
    finally:
        os.close(fd)
    return None


def holder(path: Path) -> int | None:
    """The PID holding the lock file ``path`` (None when the file is absent or nobody holds it)."""
    return _probe(Path(path), os.O_RDONLY, Path(path))


def run_dir_holder(run_dir: Path) -> int | None:
    """The PID of the ``polx train`` writing ``run_dir`` now, or None."""
    return _probe(Path(run_dir), os.O_RDONLY | os.O_DIRECTORY, Path(run_dir) / RUN_LOCK)


class RunDirLock:
    """``acquire(run_dir)`` locks the directory (writing nothing) or raises ``LockHeldError``; ``release()`` is idempotent."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self._fd: int | None = None
        self._pid_written = False

    def acquire(self, run_dir: Path) -> "RunDirLock":
        run_dir = Path(run_dir)
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        _lock_or_raise(fd, f"run directory {str(run_dir)!r}", run_dir / RUN_LOCK)
        self.run_dir, self._fd = run_dir, fd
        return self

    def write_pid(self) -> None:
        """Name this process as the writer (``<run>/.polx.lock``), for the message a second writer gets."""
        path = self.run_dir / RUN_LOCK
        tmp = path.with_name(f"{RUN_LOCK}.{os.getpid()}.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
        self._pid_written = True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._pid_written:
                (self.run_dir / RUN_LOCK).unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd, self._pid_written = None, False


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
            _lock_or_raise(fd, what, path)
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
