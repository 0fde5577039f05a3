"""The nightly's health stage and drift gate: one catalogue health report per run
(`reports/<run_id>/health.json` and `health.html`, recsys/health.py) and the gate
`gates.min_neighbour_overlap`: a candidate whose visual neighbours moved that far from the serving
version's is not published, unless the drift is accepted (`--accept-drift` or `gates.accept_drift`,
for a deliberate model change; recorded in the gate)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.nightly.report import REPORTS_DIR

if TYPE_CHECKING:
    from index.store import IndexStore
    from jobs.nightly.config import NightlyConfig
    from jobs.nightly.report import RunReport


def health_stage(config: NightlyConfig, store: IndexStore, candidate: str, serving: str | None,
                 report: RunReport) -> None:
    """Write the run's health report on `candidate` (drift against `serving`), then the drift gate."""
    from index.store import load_version
    from recsys.health import health_report, write_report

    with report.stage("health") as info:
        loaded = load_version(store.root, candidate)
        against = load_version(store.root, serving) if serving else None
        health = health_report(loaded, against)
        json_path, _ = write_report(health, config.work_dir / REPORTS_DIR / report.data["run_id"])
        r = health.report
        info.update(report=str(json_path), duplicate_groups=len(r["duplicates"]),
                    placeholders=len(r["placeholders"]), cold_items=r["cold_items"])
        overlap = None if r["drift"] is None else r["drift"]["neighbour_overlap@10"]
        info["neighbour_overlap@10"] = overlap
        limit = config.min_neighbour_overlap
        if overlap is None:
            report.gate("neighbour_overlap", True, None, limit, "no serving version (or no common items) "
                        "to compare with")
        elif overlap >= limit:
            report.gate("neighbour_overlap", True, overlap, limit,
                        f"neighbour overlap@10 {overlap:.3f} against {serving} (limit {limit})")
        elif config.accept_drift:
            report.gate("neighbour_overlap", True, overlap, limit,
                        f"neighbour overlap@10 {overlap:.3f} against {serving} is below {limit}: drift "
                        "accepted (--accept-drift)")
        else:
            report.gate("neighbour_overlap", False, overlap, limit,
                        f"neighbour overlap@10 {overlap:.3f} against {serving} is below {limit}: the "
                        "visual neighbours moved (a deliberate model change: --accept-drift)")
