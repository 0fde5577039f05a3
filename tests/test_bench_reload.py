"""`recsys bench reload` end to end at a toy size: a real server, wrk, a switch of CURRENT under
load, and its own BENCHMARKS.md section."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from index.store import IndexStore
from jobs.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_bench_reload_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## API\n\nkept\n")
    store = tmp_path / "store"
    common = ["bench", "reload", "--items", "300", "--dim", "16", "--factory", "Flat", "--store", str(store)]
    assert main([*common, "--build-only"]) == 0
    versions = IndexStore(store).version_ids()
    assert len(versions) == 2 and IndexStore(store).current_version() in versions
    assert main([*common, "--swaps", "2", "--gap", "4", "--starts", "1", "--port", str(free_port()),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "## API\n\nkept" in text and "## Reload, 300 items" in text
    section = text.split("## Reload, 300 items", 1)[1]
    assert "--store " + str(store) in section and "**0 failed**" in section and "0 failed." in section
    swaps = section.split("first answer from the new version: **", 1)[1].split(" s**", 1)[0].split(", ")
    assert len(swaps) == 2 and all(0 < float(s) < 4 for s in swaps)
