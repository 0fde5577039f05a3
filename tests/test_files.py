"""embeddings/files.py: atomic writes replace a file whole or not at all; file SHA-256."""

from __future__ import annotations

import hashlib
import json

import pytest

from embeddings.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
)


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path) -> None:
    path = tmp_path / "state.json"
    atomic_write_json({"b": 1, "a": [1, 2]}, path)
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    atomic_write_text("CURRENT\n", path)
    assert path.read_text() == "CURRENT\n"
    atomic_write_bytes(b"\x00\x01", path)
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path) -> None:
    path = tmp_path / "report.json"
    atomic_write_json({"ok": True}, path)

    def half_then_fail(tmp) -> None:
        tmp.write_text('{"ok": fal')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    with pytest.raises(TypeError):
        atomic_write_json({"bad": object()}, path)
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_file_sha256_reads_the_whole_file(tmp_path) -> None:
    data = bytes(range(256)) * 40_000  # over two 4 MiB blocks
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()
