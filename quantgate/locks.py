"""Inter-process locks around what several processes may write at once (filelock).

Model builds, GGUF files, baseline sets and result sets are each written by one process at a time:
several gate sessions (pytest-xdist workers, parallel CI jobs on one runner, a regeneration beside a
run) can share a cache, a baseline folder or a results folder. Each write still goes to a temporary
file or folder renamed into place, so a reader never sees half of it; the lock makes concurrent
writers take turns, and the one that comes second finds the work done.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def exclusive(path: Path, what: str):
    """Hold the lock file `path` (made if missing) while the block runs; say so if it must wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"quantgate: waiting for another process that is writing {what} (lock {path})", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
