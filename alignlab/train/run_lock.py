"""One run per run directory: an exclusive advisory lock on `<run_dir>/.alignlab.lock`.

The lock is `fcntl.flock` on an open file, so the operating system releases it when the process exits in any
way (normal exit, exception, SIGKILL): a lock left by a dead process is never stale. The file holds the pid of
the holder, only to name it in the error a second run gets.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alignlab.errors import ConfigError

LOCK_FILE = ".alignlab.lock"


class RunLock:
    """Hold the run directory's lock from `acquire()` until `release()` (or process exit)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock; ConfigError (one line, naming the holder's pid) when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"run_dir '{self.path.parent}' is in use by another alignlab run (pid {holder}); "
                              "wait for it to finish, or choose another run_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = ["LOCK_FILE", "RunLock"]
