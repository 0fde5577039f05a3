"""The nightly work folder's lock and state: one run at a time, and what the next run resumes.

- `nightly.lock`: flock'ed for the whole run, so two runs never overlap (the second fails at once).
  The lock's descriptor is closed in forked children (decoding workers) and on exec, so a worker
  that outlives a killed run never keeps the lock.
- `state.json`: `last_good` (the run whose embedding set the next run reuses, and the version it
  published) and `in_progress` (the run id, catalogue fingerprint and candidate versions of a run
  that has not finished); `last_rejected`; `kept_rejected` (versions a rejected run kept).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embeddings.files import atomic_write_json
from jobs.errors import JobFailed

LOCK_FILE = "nightly.lock"
STATE_FILE = "state.json"

# Descriptors of the locks this process holds. A forked child shares their open file description,
# and flock holds until every descriptor of it is closed: the child closes its copies at once.
_held: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _held:
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class RunLocked(JobFailed):
    """Another nightly run holds the work folder's lock (exit code 1; nothing was done)."""


# -- lock and state --------------------------------------------------------------------------------
@contextmanager
def run_lock(work_dir: Path) -> Iterator[Path]:
    """Hold an exclusive flock on `work_dir/nightly.lock`; RunLocked at once if another run holds it.

    The kernel drops the lock when the process dies, so a killed run never leaves a stale lock; forked
    or exec'd children do not inherit it (a worker that outlives the run does not keep it).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"{path}: another nightly run (pid {holder}) holds the lock; "
                        "this run did nothing") from None
    _held.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        if fd in _held:  # a forked child has already closed its copy (and emptied _held)
            _held.discard(fd)
            os.close(fd)


def read_state(work_dir: Path) -> dict[str, Any]:
    path = work_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise JobFailed(f"{path}: not valid JSON ({exc}); fix or delete it (the next run then embeds "
                        "everything afresh)") from None


def write_state(work_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_json(state, work_dir / STATE_FILE)
