"""The serving version's health report over HTTP (recsys/api/health_reports.py,
recsys/api/routes/reports.py): the page and summary routes, and /metrics gauges equal to the
numbers in health.json, refreshed when a new report or a new version is picked up."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from index.build import BuildOptions, build_version
from index.store import IndexStore, load_version
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main
from recsys.health import health_report, write_report
from tests.api_support import ADMIN_TOKEN, in_process_client

OPTS = BuildOptions(tune_queries=100)
N = 300
PLACEHOLDER_ROWS = [4, 50, 77, 121, 200, 262]  # none of them among the moved rows (::3)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class HealthWorld:
    store: Path
    reports: Path
    old: str  # an earlier version, with no report
    serving: str  # CURRENT: behaviour fitted, a report with drift against `old` in reports/run-1


def build_health_world(root: Path) -> HealthWorld:
    """A store whose serving version has duplicates, a placeholder, failures, cold items and drift
    against the version before it, and its nightly-style report under `root/reports/run-1`."""
    ids = [f"item{i:04d}" for i in range(N)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"{i}.jpg" for i in ids]})
    vectors = clustered_vectors(N, 16, latent=6, clusters=20, seed=1)
    vectors[PLACEHOLDER_ROWS] = vectors[4]  # one "no image" picture on six items
    vectors[10] = vectors[11]  # a re-listing
    store = root / "store"
    old = build_version(write_embedding_set(root / "a", ids, vectors, catalog), store, factory="Flat",
                        options=OPTS)
    moved = vectors.copy()  # a third of the pictures re-embedded differently
    moved[::3] = np.random.default_rng(5).standard_normal((len(moved[::3]), 16))
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    build_version(write_embedding_set(root / "b", ids, moved, catalog), store, factory="Flat", options=OPTS)
    rng = np.random.default_rng(0)  # events on the first 250 items only: the rest are cold
    events = pd.DataFrame({"user_id": [f"u{rng.integers(60)}" for _ in range(3000)],
                           "item_id": [ids[rng.integers(250)] for _ in range(3000)],
                           "timestamp": np.sort(rng.integers(1_700_000_000, 1_700_900_000, 3000))})
    events.to_csv(root / "events.csv", index=False)
    assert main(["behaviour", "fit", "--events", str(root / "events.csv"), "--store", str(store)]) == 0
    serving = IndexStore(store).current_version()
    failures = pd.DataFrame({"item_id": ["x1", "x2", "x3"], "image": ["x1.jpg", "x2.jpg", "x3.jpg"],
                             "error_type": ["decode", "decode", "http_404"],
                             "message": ["not an image", "truncated", "404 Not Found"]})
    health = health_report(load_version(store, serving), load_version(store, old), failures=failures)
    write_report(health, root / "reports" / "run-1")
    return HealthWorld(store, root / "reports", old, serving)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> HealthWorld:
    return build_health_world(tmp_path_factory.mktemp("health-api"))


def scrape(client) -> dict[str, dict[tuple, float]]:
    """/metrics parsed: metric sample name -> {label values: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def assert_gauges_match(metrics: dict, report: dict) -> None:
    """Every health gauge equals its number in health.json."""
    assert value(metrics, "recsys_health_report_available") == 1
    drift = report["drift"]
    assert value(metrics, "recsys_health_report_info", version=report["version"],
                 against=drift["against"] if drift else "") == 1
    assert value(metrics, "recsys_health_items") == report["items"]
    assert value(metrics, "recsys_health_duplicate_groups") == len(report["duplicates"])
    assert value(metrics, "recsys_health_duplicate_items") == \
        sum(len(d["items"]) for d in report["duplicates"])
    assert value(metrics, "recsys_health_placeholders") == len(report["placeholders"])
    assert value(metrics, "recsys_health_placeholder_items") == \
        sum(len(p["items"]) for p in report["placeholders"])
    if report["failures"]["count"] is None:
        assert "recsys_health_failures" not in metrics
    else:
        assert value(metrics, "recsys_health_failures") == report["failures"]["count"]
    assert metrics.get("recsys_health_failures_by_type", {}) == {
        (("error_type", t),): c for t, c in report["failures"]["by_type"].items()}
    if report["cold_items"] is None:
        assert "recsys_health_cold_items" not in metrics
    else:
        assert value(metrics, "recsys_health_cold_items") == report["cold_items"]
    if drift is not None:
        assert value(metrics, "recsys_health_drift_same_image_items") == drift["same_image_items"]
        for stat in ("min", "mean"):
            assert value(metrics, "recsys_health_drift_same_image_cosine", stat=stat) == \
                pytest.approx(drift["same_image_cosine"][stat])
        assert value(metrics, "recsys_health_drift_neighbour_overlap", k="10") == \
            pytest.approx(drift["neighbour_overlap@10"])


def test_metrics_carry_the_report_counts_and_follow_new_reports_and_versions(world: HealthWorld) -> None:
    report = json.loads((world.reports / "run-1" / "health.json").read_text())
    # the world is what the test needs: every count is there to be compared, none is zero
    assert report["version"] == world.serving
    assert any({"item0010", "item0011"} <= set(d["items"]) for d in report["duplicates"])
    assert len(report["placeholders"]) == 1
    assert report["failures"]["by_type"] == {"decode": 2, "http_404": 1}
    assert 40 <= report["cold_items"] <= 60
    assert report["drift"]["against"] == world.old and report["drift"]["same_image_items"] == N
    cosine = report["drift"]["same_image_cosine"]
    assert cosine["min"] < 0.5 < cosine["mean"] < 1
    assert 0.3 < report["drift"]["neighbour_overlap@10"] < 1.0

    with in_process_client(world.store, reports=world.reports) as client:
        metrics = scrape(client)
        assert_gauges_match(metrics, report)
        modified = (world.reports / "run-1" / "health.json").stat().st_mtime
        assert value(metrics, "recsys_health_report_timestamp_seconds") == pytest.approx(modified)

        summary = client.get("/v1/health/summary").json()
        assert summary["version"] == world.serving and summary["report"] == "/v1/health/report"
        assert summary["duplicate_groups"] == len(report["duplicates"])
        assert summary["failures_by_type"] == {"decode": 2, "http_404": 1}
        page = client.get("/v1/health/report")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.content == (world.reports / "run-1" / "health.html").read_bytes()

        # a newer report on the same version (the embedding set's failures: none; no drift) is
        # picked up by the next scrape
        newer = health_report(load_version(world.store, world.serving))
        write_report(newer, world.reports / "run-2")
        later = time.time() + 5
        for name in ("health.json", "health.html"):
            os.utime(world.reports / "run-2" / name, (later, later))
        second = json.loads((world.reports / "run-2" / "health.json").read_text())
        metrics = scrape(client)
        assert_gauges_match(metrics, second)
        assert value(metrics, "recsys_health_failures") == 0
        assert "recsys_health_failures_by_type" not in metrics
        assert "recsys_health_drift_same_image_items" not in metrics
        assert client.get("/v1/health/report").content == \
            (world.reports / "run-2" / "health.html").read_bytes()

        # another version served: its own report, or none
        reload = client.post("/v1/admin/reload", params={"version": world.old}, headers=ADMIN)
        assert reload.status_code == 200
        assert value(scrape(client), "recsys_health_report_available") == 0
        assert "recsys_health_items" not in scrape(client)
        missing = client.get("/v1/health/report")
        assert missing.status_code == 404 and world.old in missing.json()["message"]
        assert client.get("/v1/health/summary").status_code == 404
        write_report(health_report(load_version(world.store, world.old)), world.reports / "old")
        assert_gauges_match(scrape(client), json.loads((world.reports / "old" / "health.json").read_text()))
        assert client.get("/v1/health/summary").json()["version"] == world.old


def test_without_a_reports_folder_the_routes_say_how_to_get_one(world: HealthWorld) -> None:
    with in_process_client(world.store) as client:
        assert value(scrape(client), "recsys_health_report_available") == 0
        answer = client.get("/v1/health/report")
        assert answer.status_code == 404
        assert answer.json()["error"] == "no_report" and "--reports" in answer.json()["message"]


def test_unreadable_reports_are_skipped(world: HealthWorld, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "health.json").write_text("{not json")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "health.json").write_text(json.dumps({"version": "some-other-version"}))
    with in_process_client(world.store, reports=tmp_path) as client:
        assert value(scrape(client), "recsys_health_report_available") == 0
        assert client.get("/v1/health/summary").status_code == 404
        (tmp_path / "health.json").write_text((world.reports / "run-1" / "health.json").read_text())
        assert client.get("/v1/health/summary").json()["version"] == world.serving
        # health.json is there, the page not yet (a report being written): 404, not an error
        assert client.get("/v1/health/report").status_code == 404
