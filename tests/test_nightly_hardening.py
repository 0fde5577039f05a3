"""The nightly's robustness: the lock not inherited by workers, stale staging cleaned, versions a crash
left untracked adopted or removed, and the item-drop gate on item identity (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

from jobs.nightly.state import RunLocked, run_lock


def test_a_forked_worker_does_not_keep_the_lock(tmp_path: Path) -> None:
    # A decoding worker forked while the run holds the lock outlives the run (killed, or finished):
    # the next run must still get the lock while the worker lives.
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    with run_lock(tmp_path):
        child = os.fork()
        if child == 0:  # the worker: says it runs, then waits until told to go
            try:
                os.write(ready_write, b"r")
                os.read(go_read, 1)
            finally:
                os._exit(0)
    os.close(go_read)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"  # the worker runs (and lives until told to go)
        with run_lock(tmp_path):
            pass
    except RunLocked:
        raise AssertionError("the forked worker kept the nightly lock") from None
    finally:
        os.write(go_write, b"x")
        os.close(go_write)
        os.close(ready_read)
        os.waitpid(child, 0)
