"""The nightly's robustness: the lock not inherited by workers, stale staging cleaned, versions a crash
left untracked removed, and the item-drop gate on item identity (issue 14)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from index.store import IndexStore
from jobs.nightly.config import load_config
from jobs.nightly.run import GateFailed, run_nightly
from jobs.nightly.state import RunLocked, read_state, run_lock
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


def test_a_crash_after_a_commit_leaves_nothing_untracked(tmp_path: Path, monkeypatch) -> None:
    import shutil
    import subprocess
    import sys

    import jobs.nightly.run as nightly
    from index.store import WRITER_FILE, _writer_tag, read_meta

    images = tmp_path / "images"
    write_images(images, 4)
    config = load_config(write_config(tmp_path / "nightly.toml", 'images = "images"'))
    store = IndexStore(tmp_path / "store")
    first = run_nightly(config)

    # The next night dies right after its index version is committed, before recording it.
    write_images(images, 2, start=4)

    def crash(*args, **kwargs) -> None:
        raise RuntimeError("killed after the commit")

    monkeypatch.setattr(nightly, "_add_candidate", crash)
    with pytest.raises(RuntimeError, match="killed after the commit"):
        run_nightly(config)
    monkeypatch.undo()
    orphan = next(v for v in store.version_ids() if v != first["published"])
    assert read_state(tmp_path / "work")["in_progress"]["candidates"] == []
    # an earlier run's version nothing tracks (its state lost), a crashed writer's staging folder,
    # and a user's version derived from the published one (kept: not the nightly's to remove)
    earlier = "20000101T000000.000000Z-aaaaaa"
    shutil.copytree(store.version_dir(orphan), store.version_dir(earlier))
    meta = read_meta(store.version_dir(earlier))
    meta["embeddings"]["path"] = str((tmp_path / "work" / "runs" / "20000101T000000Z-0000" / "embeddings")
                                     .resolve())
    (store.version_dir(earlier) / "meta.json").write_text(json.dumps(meta))
    with store.write_version(base=first["published"]) as writer:
        writer.file("rules.json").write_text("[]")
        writer.commit({})
    users = writer.version
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = store.root / "versions" / ".tmp-crashed"
    staging.mkdir()
    (staging / WRITER_FILE).write_text(_writer_tag(dead.pid))

    resumed = run_nightly(config)
    assert resumed["resumed"] and resumed["status"] == "published"
    assert store.version_ids() == sorted([first["published"], users, resumed["published"]])
    assert not staging.exists()


def test_kept_rejected_versions_are_not_taken_for_untracked_ones(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_images(images, 4)
    config = load_config(write_config(tmp_path / "nightly.toml", 'images = "images"',
                                      extra="[gates]\nkeep_rejected = true\n"))
    store = IndexStore(tmp_path / "store")
    first = run_nightly(config)
    for path in sorted(images.iterdir())[:2]:
        path.unlink()
    with pytest.raises(GateFailed, match="item_drop"):
        run_nightly(config)
    kept = [v for v in store.version_ids() if v != first["published"]]
    assert len(kept) == 1 and read_state(tmp_path / "work")["kept_rejected"] == kept
    with pytest.raises(GateFailed, match="item_drop"):
        run_nightly(config)
    assert set(kept) < set(store.version_ids()) and len(store.version_ids()) == 3
