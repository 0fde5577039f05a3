"""The nightly's robustness: the lock not inherited by workers, stale staging cleaned, versions a crash
left untracked adopted or removed, and the item-drop gate on item identity (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from index.store import IndexStore
from jobs.nightly.config import load_config
from jobs.nightly.run import GateFailed, run_nightly
from jobs.nightly.state import RunLocked, run_lock
from tests.imagegen import write_images
from tests.test_nightly import write_config


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


def test_the_item_drop_gate_compares_items_not_counts(tmp_path: Path) -> None:
    # The same number of items, half of them other items: the gate fails and CURRENT stays.
    images = tmp_path / "images"
    write_images(images, 8)
    config = load_config(write_config(tmp_path / "nightly.toml", 'images = "images"'))
    store = IndexStore(tmp_path / "store")
    first = run_nightly(config)
    versions = store.version_ids()
    for path in sorted(images.iterdir())[:4]:
        path.unlink()
    write_images(images, 4, start=100)
    with pytest.raises(GateFailed, match="item_drop") as failed:
        run_nightly(config)
    gate = failed.value.report["gates"][-1]
    assert gate["name"] == "item_drop" and gate["value"] == 0.5 and not gate["passed"]
    assert store.current_version() == first["published"] and store.version_ids() == versions
