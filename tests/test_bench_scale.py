"""The scale benchmarks run end to end at toy sizes and write their own BENCHMARKS.md sections."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from jobs.bench.behaviour_scale import generate_events
from jobs.cli import main


def test_generated_events_follow_a_power_law(tmp_path: Path) -> None:
    events = pq.read_table(generate_events(tmp_path / "e.parquet", 20_000, 1_000)).to_pandas()
    assert len(events) == 20_000 and events.user_id.nunique() <= 2_000
    counts = events.item_id.value_counts()
    assert counts.iloc[0] > 20 * counts.median()  # a few best-sellers, a long tail
    assert set(events.event) == {"view", "click", "cart", "purchase"}


def test_behaviour_scale_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Recommender\n\nkept\n")
    assert main(["bench", "recsys", "--scale-events", "3000,6000", "--scale-items", "500",
                 "--scale-dir", str(tmp_path / "scale"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Recommender\n\nkept" in text and "## Behaviour at scale" in text
    assert "| 3,000 |" in text and "| 6,000 |" in text and "within 16 GB: met" in text


def test_index_ondisk_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    assert main(["bench", "index", "--ondisk", "--n", "20000", "--dim", "16", "--nlist", "64", "--pq", "8",
                 "--train", "4000", "--block-rows", "7000", "--queries", "50", "--nprobe", "4,64",
                 "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Index beyond 10M items" in text and "IVF64_HNSW32,PQ8np" in text
    recall = {line.split("|")[2].strip(): float(line.split("|")[3]) for line in text.splitlines()
              if line.startswith("| 64 |")}
    assert set(recall) == {"none: PQ scores", "100", "400"}
    assert recall["400"] >= recall["100"] > 0.9 and recall["100"] >= recall["none: PQ scores"]
    assert not (tmp_path / "work").exists()  # removed without --keep
