"""`recsys bench soak` writes its part of BENCHMARKS.md' "## Soak": a run with --unknown-users
replaces only the "### Unknown users" part, a run without it only the soak figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.bench.soak import _write


def result(requests: int, rss_after: float) -> dict:
    return {"requests": requests, "rps": requests / 60, "p50_us": 5000, "p99_us": 50000, "max_us": 400000,
            "failed": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0,
            "published": ["v1", "v2"], "swapped": ["v1", "v2"], "rss": [(t, 500.0) for t in range(90)],
            "load": (1.0, 2.0), "reload_failures": 0.0, "fit_seconds": 321.0,
            "strangers": {"count": 15_000, "before": 560.0, "after": rss_after, "failed": 0, "seconds": 90.0}}


def run(out: Path, duration: int, unknown_users: int, requests: int, rss_after: float = 570.0) -> None:
    _write(argparse.Namespace(items=100_000, dim=256, duration=duration, every=20.0, connections=16,
                              unknown_users=unknown_users, out=out), result(requests, rss_after))


def test_each_run_replaces_only_its_own_part_of_the_soak_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Soak\n\nold\n\n## Next\n\nkept\n")
    run(out, 300, 0, 781_129)
    text = out.read_text()
    assert "| 781,129 |" in text and "old" not in text and "### Unknown users" not in text
    run(out, 60, 15_000, 1_234, rss_after=572.0)
    run(out, 60, 15_000, 1_234, rss_after=575.0)  # again: replaces its part, does not add one
    text = out.read_text()
    assert "--duration 300 --every 20 --connections 16`" in text and "| 781,129 |" in text  # the soak stays
    assert text.count("### Unknown users") == 1 and "| 15,000 | 200 | 560 | 575 | **+15** |" in text
    assert "--duration 60 --every 20 --connections 16 --unknown-users 15000`" in text
    assert "fitted here in 321 s" in text
    assert text.index("## Soak") < text.index("### Unknown users") < text.index("## Next")
    assert text.rstrip().endswith("kept")
    run(out, 300, 0, 900_000)  # a new soak keeps the strangers' part
    text = out.read_text()
    assert "| 900,000 |" in text and "| 781,129 |" not in text and "**+15**" in text
