"""The serving version's catalogue health report (DESIGN.md "Health report", written by
recsys/health.py): found in the reports folder the server is given (`recsys serve --reports DIR`
or RECSYS_REPORTS_DIR: a nightly's `work_dir/reports`, or a folder of `recsys report --out`
folders), summarised for the page and for programs, and its counts as Prometheus gauges.

The report shown is the newest `health.json` (by modification time) in the folder or one level
below whose `version` is the version being served. Files are looked at again on every request and
scrape, and a report is parsed only when it is new or changed, so a new version or a new report is
picked up by the next request or scrape, with nothing to poll.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

REPORT_JSON = "health.json"
REPORT_HTML = "health.html"
OVERLAP = "neighbour_overlap@10"


@dataclass(frozen=True)
class HealthReport:
    """One report on disk and the summary of its health.json."""

    json_path: Path
    modified: float  # seconds since the epoch
    summary: dict[str, Any]

    @property
    def html_path(self) -> Path:
        return self.json_path.with_name(REPORT_HTML)


def summarise(report: dict[str, Any], modified: float) -> dict[str, Any]:
    """The counts of a health.json that the page shows and /metrics exports (None: not known)."""
    failures = report.get("failures") or {}
    drift = report.get("drift")
    return {
        "version": report.get("version"),
        "modified": modified,
        "items": report.get("items"),
        "duplicate_groups": len(report.get("duplicates") or []),
        "duplicate_items": sum(len(d["items"]) for d in report.get("duplicates") or []),
        "placeholders": len(report.get("placeholders") or []),
        "placeholder_items": sum(len(p["items"]) for p in report.get("placeholders") or []),
        "failures": failures.get("count"),
        "failures_by_type": dict(failures.get("by_type") or {}),
        "cold_items": report.get("cold_items"),
        "drift": None if drift is None else {
            "against": drift.get("against"),
            "same_image_items": drift.get("same_image_items"),
            "same_image_cosine": dict(drift.get("same_image_cosine") or {}),
            OVERLAP: drift.get(OVERLAP),
        },
    }


class HealthReports:
    """Finds the newest health report on a version in one folder (None: no folder given)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._lock = threading.Lock()  # requests and scrapes look from worker threads
        # health.json path -> ((mtime_ns, size), the version it reports on)
        self._versions: dict[Path, tuple[tuple[int, int], str | None]] = {}
        self._latest: tuple[tuple[int, int], HealthReport] | None = None

    def missing(self, version: str) -> str:
        """Why there is no report on `version`, for people."""
        if self.folder is None:
            return ("no health reports folder: start the server with --reports DIR (a nightly's "
                    "work_dir/reports) or RECSYS_REPORTS_DIR")
        return (f"no health report on version {version} in {self.folder} (the nightly writes one per run; "
                f"`recsys report --store STORE --out {self.folder}/NAME` writes one)")

    def latest(self, version: str | None) -> HealthReport | None:
        """The newest report on `version`, or None."""
        if self.folder is None or version is None:
            return None
        with self._lock:
            best: tuple[Path, tuple[int, int]] | None = None
            seen = {}
            for path in self._candidates():
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed since the listing
                key = (stat.st_mtime_ns, stat.st_size)
                known = self._versions.get(path)
                if known is None or known[0] != key:
                    known = (key, _version_of(path))
                seen[path] = known
                if known[1] == version and (best is None or key > best[1]):
                    best = (path, key)
            self._versions = seen
            if best is None:
                return None
            path, key = best
            if self._latest is None or self._latest[1].json_path != path or self._latest[0] != key:
                report = _read(path)
                if report is None:
                    return None
                modified = key[0] / 1e9
                self._latest = key, HealthReport(path, modified, summarise(report, modified))
            return self._latest[1]

    def _candidates(self) -> list[Path]:
        assert self.folder is not None
        if not self.folder.is_dir():
            return []
        return [self.folder / REPORT_JSON, *self.folder.glob(f"*/{REPORT_JSON}")]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("health report %s unreadable: %s", path, exc)
        return None
    return report if isinstance(report, dict) else None


def _version_of(path: Path) -> str | None:
    report = _read(path)
    return None if report is None else str(report.get("version"))


class HealthGauges:
    """A Prometheus collector: the counts of the serving version's newest report, looked up at
    each scrape (recsys_health_report_available 0 when there is none)."""

    def __init__(self, reports: HealthReports, serving_version: Callable[[], str | None]) -> None:
        self.reports = reports
        self.serving_version = serving_version

    def collect(self) -> Iterator[Metric]:
        report = self.reports.latest(self.serving_version())
        yield GaugeMetricFamily("recsys_health_report_available",
                                "1 when a health report on the serving version was found",
                                value=int(report is not None))
        if report is None:
            return
        s = report.summary
        drift = s["drift"] or {}
        info = GaugeMetricFamily("recsys_health_report_info", "The health report shown (1)",
                                 labels=["version", "against"])
        info.add_metric([str(s["version"]), str(drift.get("against") or "")], 1)
        yield info
        yield GaugeMetricFamily("recsys_health_report_timestamp_seconds", "When the report was written",
                                value=s["modified"])
        plain = [("items", "Items in the reported version"),
                 ("duplicate_groups", "Groups of different items with the same product shot"),
                 ("duplicate_items", "Items in duplicate groups"),
                 ("placeholders", "Pictures shared by many items (placeholders)"),
                 ("placeholder_items", "Items showing a placeholder picture"),
                 ("failures", "Items whose image failed to embed"),
                 ("cold_items", "Catalogue items with no behaviour")]
        for name, text in plain:
            if s[name] is not None:
                yield GaugeMetricFamily(f"recsys_health_{name}", text, value=s[name])
        by_type = GaugeMetricFamily("recsys_health_failures_by_type", "Failed images by error type",
                                    labels=["error_type"])
        for error_type, count in s["failures_by_type"].items():
            by_type.add_metric([error_type], count)
        yield by_type
        if not drift:
            return
        if drift["same_image_items"] is not None:
            yield GaugeMetricFamily("recsys_health_drift_same_image_items",
                                    "Items whose image did not change since the compared version",
                                    value=drift["same_image_items"])
        cosine = GaugeMetricFamily("recsys_health_drift_same_image_cosine",
                                   "Cosine of the old and new vector of unchanged images", labels=["stat"])
        for stat in ("min", "mean"):
            if drift["same_image_cosine"].get(stat) is not None:
                cosine.add_metric([stat], drift["same_image_cosine"][stat])
        yield cosine
        if drift[OVERLAP] is not None:
            overlap = GaugeMetricFamily("recsys_health_drift_neighbour_overlap",
                                        "Mean share of top-k visual neighbours kept from the compared "
                                        "version",
                                        labels=["k"])
            overlap.add_metric(["10"], drift[OVERLAP])
            yield overlap
