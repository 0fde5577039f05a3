"""Catalogue health (recsys/health.py, `recsys report`): duplicates and placeholders on real
photographs embedded by the bundled Lite0, drift between real store versions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from index.build import BuildOptions, build_version
from index.store import load_version
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main
from jobs.fixtures.real_photos import real_photos
from recsys.health import (
    DISTRIBUTION_BINS,
    DUPLICATE_COSINE,
    SHIFT_TITLE,
    _principal_axes,
    failure_summary,
    health_report,
    write_report,
)

OPTS = BuildOptions(tune_queries=100)
RELISTED = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle"]  # each listed twice


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def no_image_picture() -> Image.Image:
    """A shop's grey "no image yet" picture."""
    array = np.full((300, 300, 3), 230, dtype=np.uint8)
    array[120:180, 60:240] = 150
    return Image.fromarray(array)


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory, lite0):
    """12 distinct real photos; 5 of them re-listed as another item (re-encoded at quality 75,
    chelsea also flipped);
    one "no image" picture on 7 items. Built into a store version."""
    from embeddings.torch_runtime import TorchEmbedder

    embedder = TorchEmbedder(lite0, "cpu")
    photos = real_photos()
    ids, images, shas = [], [], []
    for name, photo in photos.items():
        ids.append(name)
        images.append(jpeg(photo, 92))
        shas.append(f"sha-{name}")
    for name in RELISTED:
        relisting = jpeg(photos[name], 75)
        if name == "chelsea":
            relisting = relisting.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        ids.append(f"{name}-relisted")
        images.append(relisting)
        shas.append(f"sha-{name}-relisted")
    vectors = embedder.embed_images(images)
    placeholder = embedder.embed_images([no_image_picture()])
    placeholder_ids = [f"new-{i}" for i in range(7)]
    ids += placeholder_ids
    shas += ["sha-no-image"] * len(placeholder_ids)
    vectors = np.vstack([vectors, np.repeat(placeholder, len(placeholder_ids), axis=0)])
    folder = tmp_path_factory.mktemp("photos")
    catalog = pd.DataFrame({"item_id": ids, "image": [f"{i}.jpg" for i in ids], "image_sha256": shas})
    version = build_version(write_embedding_set(folder / "set", ids, vectors, catalog), folder / "store",
                            factory="Flat", options=OPTS)
    return folder / "store", version, ids, vectors


def test_relistings_found_distinct_photos_and_placeholder_not_duplicates(photo_store) -> None:
    store, version, ids, vectors = photo_store
    report = health_report(load_version(store, version)).report
    groups = [sorted(d["items"]) for d in report["duplicates"]]
    assert sorted(groups) == sorted(sorted([n, f"{n}-relisted"]) for n in RELISTED), report["duplicates"]
    assert all(DUPLICATE_COSINE <= d["cosine"] < 0.999 for d in report["duplicates"])
    # distinct photos: their highest cosine stays below the threshold (the test would flag them)
    distinct = vectors[:12] @ vectors[:12].T
    np.fill_diagonal(distinct, -1)
    assert distinct.max() < DUPLICATE_COSINE - 0.2
    assert report["placeholders"] == [{"items": [f"new-{i}" for i in range(7)],
                                       "image_sha256": "sha-no-image"}]
    assert report["thresholds"]["duplicate_cosine"] == DUPLICATE_COSINE


def test_placeholder_found_by_identical_vectors_without_hashes(tmp_path) -> None:
    vectors = clustered_vectors(300, 16, latent=6, clusters=20, seed=1)
    vectors[[3, 50, 77, 120, 200, 260]] = vectors[3]  # one picture on six items, no hashes known
    vectors[10] = vectors[11]  # two items share one picture: a duplicate, not a placeholder
    ids = [f"item/{i}" for i in range(300)]
    version = build_version(write_embedding_set(tmp_path / "set", ids, vectors), tmp_path / "store",
                            factory="Flat", options=OPTS)
    report = health_report(load_version(tmp_path / "store", version)).report
    assert [p["items"] for p in report["placeholders"]] == [[ids[r] for r in (3, 50, 77, 120, 200, 260)]]
    flagged = {i for d in report["duplicates"] for i in d["items"]}
    assert {"item/10", "item/11"} <= flagged
    assert not flagged & {ids[r] for r in (3, 50, 77, 120, 200, 260)}
    assert report["failures"] == {"count": 0, "by_type": {}, "examples": {}}
    assert report["cold_items"] is None


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """One catalogue built twice with the same vectors, and once more with noise vectors."""
    folder = tmp_path_factory.mktemp("drift")
    vectors = clustered_vectors(600, 32, latent=8, clusters=30, seed=2)
    ids = [f"item/{i}" for i in range(600)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"{i}.jpg" for i in ids]})
    first = build_version(write_embedding_set(folder / "a", ids, vectors, catalog), folder / "store",
                          factory="Flat", options=OPTS)
    noise = np.random.default_rng(3).standard_normal(vectors.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    noisy = build_version(write_embedding_set(folder / "b", ids, noise, catalog), folder / "store",
                          factory="Flat", options=OPTS, publish=False)
    return folder / "store", first, noisy


def test_drift_against_itself_is_none_and_noise_moves_every_neighbour(two_versions) -> None:
    store, first, noisy = two_versions
    loaded = load_version(store, first)
    same = health_report(loaded, loaded).report["drift"]
    assert same["same_image_items"] == 600
    assert same["same_image_cosine"] == {"min": 1.0, "mean": 1.0}
    assert same["neighbour_overlap@10"] == 1.0
    moved = health_report(load_version(store, noisy), loaded).report["drift"]
    assert moved["against"] == first and moved["same_image_items"] == 600
    assert moved["same_image_cosine"]["mean"] < 0.3
    assert moved["neighbour_overlap@10"] < 0.1


def test_distribution_shift_numbers_and_plot(two_versions, tmp_path) -> None:
    """health.json carries the numbers behind the shift plot, and they are what the vectors give:
    the old version's principal components, each item's nearest other item, the old-new cosines."""
    import base64
    import re

    store, first, noisy = two_versions
    old, new = load_version(store, first), load_version(store, noisy)
    health = health_report(new, old)
    shift = health.report["drift"]["distribution"]
    assert shift["items"] == 600

    a = old.vectors.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = new.vectors.astype(np.float64)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert shift["spread"]["old"] == pytest.approx(np.linalg.norm(a.mean(0)), abs=1e-3)
    assert shift["spread"]["new"] == pytest.approx(np.linalg.norm(b.mean(0)), abs=1e-3)
    _, values, axes = np.linalg.svd(a - a.mean(0), full_matrices=False)
    pcs = shift["principal_components"]
    assert pcs["explained_variance_ratio"] == pytest.approx((values[:2] ** 2 / (values ** 2).sum()).tolist(),
                                                            abs=1e-3)
    for c in range(2):
        old_pc, new_pc = (a - a.mean(0)) @ axes[c], (b - a.mean(0)) @ axes[c]
        assert pcs["old"]["std"][c] == pytest.approx(old_pc.std(), abs=1e-3)
        assert pcs["new"]["std"][c] == pytest.approx(new_pc.std(), abs=1e-3)
        # the sign of a component is a choice
        assert abs(pcs["new"]["mean"][c]) == pytest.approx(abs(new_pc.mean()), abs=1e-3)
        histogram = pcs["histograms"][c]
        assert len(histogram["edges"]) == DISTRIBUTION_BINS + 1
        assert sum(histogram["old"]) == sum(histogram["new"]) == 600
    # noise has no direction of its own: along the catalogue's main directions it spreads far less
    assert pcs["new"]["std"][0] < 0.5 * pcs["old"]["std"][0]

    nearest = shift["nearest_cosine"]
    for vectors, counts in ((a, nearest["old"]), (b, nearest["new"])):
        scores = vectors @ vectors.T
        np.fill_diagonal(scores, -2)
        expected = np.histogram(scores.max(1), nearest["edges"])[0]
        # the same up to values a float16 rounding away from an edge (stored vectors vs index scores)
        assert np.abs(np.cumsum(expected) - np.cumsum(counts)).max() <= 3
    assert np.average(nearest["edges"][1:], weights=nearest["new"]) < \
        np.average(nearest["edges"][1:], weights=nearest["old"]) - 0.2
    same = shift["same_image_cosine"]
    assert sum(same["counts"]) == health.report["drift"]["same_image_items"] == 600
    assert same["edges"][0] <= health.report["drift"]["same_image_cosine"]["min"] + 1e-4

    _, html_path = write_report(health, tmp_path)
    page = html_path.read_text()
    plot = re.search(f'<img alt="{SHIFT_TITLE}" src="data:image/png;base64,([^"]+)"', page)
    assert plot is not None
    picture = Image.open(io.BytesIO(base64.b64decode(plot.group(1))))
    assert picture.format == "PNG" and picture.width > 600
    assert f"new mean {pcs['new']['mean'][0]} std {pcs['new']['std'][0]}" in page

    unchanged = health_report(old, old).report["drift"]["distribution"]
    assert unchanged["centroid_cosine"] == 1.0
    assert all(h["old"] == h["new"] for h in unchanged["principal_components"]["histograms"])


@pytest.mark.parametrize("samples", [12, 40])  # fewer samples than dimensions (SVD), and more (covariance)
def test_principal_axes_are_the_covariances_eigenvectors(samples) -> None:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(samples, 4)) @ rng.normal(size=(4, 24))
    centred = latent - latent.mean(axis=0)
    variances, axes = _principal_axes(centred)
    expected, vectors = np.linalg.eigh(centred.T @ centred / samples)
    expected, vectors = expected[::-1], vectors[:, ::-1].T
    assert np.all(np.diff(variances) <= 1e-12)  # largest first
    assert variances[:4] == pytest.approx(expected[:4], rel=1e-9)
    assert variances.clip(min=0).sum() == pytest.approx(expected.clip(min=0).sum(), rel=1e-9)
    for got, want in zip(axes[:4], vectors[:4]):  # the sign of an axis is a choice
        assert abs(float(got @ want)) == pytest.approx(1.0, abs=1e-9)


def test_drift_between_vectors_of_different_sizes(tmp_path) -> None:
    """A model whose vectors changed size: no old-new cosine (said so), neighbours still compared."""
    ids = [f"item/{i}" for i in range(200)]
    store = tmp_path / "store"
    old = build_version(write_embedding_set(tmp_path / "a", ids, clustered_vectors(200, 16, latent=6,
                                                                                 clusters=10, seed=7)),
                        store, factory="Flat", options=OPTS)
    new = build_version(write_embedding_set(tmp_path / "b", ids, clustered_vectors(200, 32, latent=6,
                                                                                 clusters=10, seed=7)),
                        store, factory="Flat", options=OPTS)
    health = health_report(load_version(store, new), load_version(store, old))
    drift = health.report["drift"]
    assert drift["same_image_cosine"] == {"min": None, "mean": None}
    assert "16 -> 32" in drift["note"]
    assert 0 <= drift["neighbour_overlap@10"] <= 1
    shift = drift["distribution"]
    assert shift["principal_components"] is None and shift["centroid_cosine"] is None
    assert sum(shift["nearest_cosine"]["new"]) == 200
    _, html_path = write_report(health, tmp_path / "out")
    assert "16 -&gt; 32" in html_path.read_text()


def test_failure_summary_counts_by_type_with_examples() -> None:
    failures = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "image": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
                             "error_type": ["decode", "decode", "http_404", "decode"],
                             "message": ["not an image", "truncated", "404 Not Found", "empty"]})
    summary = failure_summary(failures)
    assert summary["count"] == 4 and summary["by_type"] == {"decode": 3, "http_404": 1}
    assert summary["examples"]["http_404"] == [{"item_id": "c", "image": "c.jpg", "message": "404 Not Found"}]


def test_report_command_writes_json_and_html(two_versions, tmp_path, capsys) -> None:
    store, first, noisy = two_versions
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--version", noisy, "--against", first,
                 "--out", str(out)]) == 0
    report = json.loads((out / "health.json").read_text())
    assert set(report) >= {"version", "items", "duplicates", "placeholders", "failures", "drift",
                           "cold_items"}
    assert report["version"] == noisy and report["items"] == 600
    assert "distribution over 600 items: mean-vector length old" in capsys.readouterr().out
    assert set(report["drift"]) >= {"against", "same_image_items", "same_image_cosine",
                                    "neighbour_overlap@10"}
    page = (out / "health.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert main(["report", "--store", str(store), "--version", "nope", "--out", str(out)]) == 2
    assert main(["report", "--store", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such" in capsys.readouterr().err


def test_write_report_round_trips(two_versions, tmp_path) -> None:
    store, first, _ = two_versions
    loaded = load_version(store, first)
    health = health_report(loaded, loaded)
    health.drift_cosines = np.array([0.99999994, 1.0, 1.0], np.float32)  # a rounding apart: one bin
    json_path, html_path = write_report(health, tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(health.report))
    assert html_path.read_text().count("data:image/png;base64,") == 3


def test_new_items_are_not_drift(tmp_path) -> None:
    """Items added since the old version crowd the neighbour lists, but among the items in both
    versions nothing moved: overlap 1.0."""
    vectors = clustered_vectors(500, 16, latent=6, clusters=20, seed=4)
    ids = [f"item/{i}" for i in range(500)]
    old = build_version(write_embedding_set(tmp_path / "a", ids[:60], vectors[:60]), tmp_path / "store",
                        factory="Flat", options=OPTS)
    new = build_version(write_embedding_set(tmp_path / "b", ids, vectors), tmp_path / "store",
                        factory="Flat", options=OPTS)
    drift = health_report(load_version(tmp_path / "store", new),
                          load_version(tmp_path / "store", old)).report["drift"]
    assert drift["common_items"] == 60 and drift["same_image_items"] == 60
    assert drift["neighbour_overlap@10"] == 1.0


def test_cold_items_are_the_catalogue_items_without_behaviour(tmp_path) -> None:
    vectors = clustered_vectors(200, 16, latent=6, clusters=10, seed=6)
    ids = [f"item/{i}" for i in range(200)]
    build_version(write_embedding_set(tmp_path / "set", ids, vectors), tmp_path / "store",
                  factory="Flat", options=OPTS)
    rng = np.random.default_rng(0)
    warm = ids[:150]  # the last 50 items have no events
    events = pd.DataFrame({"user_id": [f"u{rng.integers(60)}" for _ in range(3000)],
                           "item_id": [warm[rng.integers(150)] for _ in range(3000)],
                           "timestamp": np.sort(rng.integers(1_700_000_000, 1_700_900_000, 3000))})
    events.to_csv(tmp_path / "events.csv", index=False)
    assert main(["behaviour", "fit", "--events", str(tmp_path / "events.csv"),
                 "--store", str(tmp_path / "store")]) == 0
    report = health_report(load_version(tmp_path / "store")).report
    assert report["cold_items"] == 200 - len(set(events["item_id"]))
    assert 50 <= report["cold_items"] <= 55


def test_bench_health_writes_its_own_section(tmp_path: Path) -> None:
    from jobs.cli import main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## API\n\nkept as it is\n")
    assert main(["bench", "health", "--items", "2000", "--dim", "16", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("## Health report") == 1 and "## API\n\nkept as it is" in text
    section = text.split("## Health report", 1)[1]
    assert "| health report, drift included |" in section
    assert "| of which the shift of the vector distribution (timed again alone) |" in section
    assert "neighbour overlap@10 against the same items rebuilt: 1.0" in section
