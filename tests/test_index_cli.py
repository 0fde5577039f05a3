"""`recsys index ...` and `recsys similar`: output, exit codes and messages (in-process CLI)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from index.store import IndexStore
from index.synthetic import clustered_vectors, write_embedding_set
from jobs.cli import main


@pytest.fixture(scope="module")
def emb(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cli")
    vectors = clustered_vectors(800, 16, latent=6, clusters=20, seed=4)
    ids = [f"c{i}" for i in range(800)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"/img/{i}.jpg" for i in ids],
                            "category": ["red", "blue"] * 400})
    return write_embedding_set(root / "set", ids, vectors, catalog)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_list_similar_publish_rollback(emb, tmp_path, capsys) -> None:
    store = tmp_path / "store"
    code, out, _ = run(capsys, "index", "build", "--embeddings", emb, "--store", store)
    assert code == 0
    v1 = out.strip()
    assert IndexStore(store).current_version() == v1
    code, out, _ = run(capsys, "index", "build", "--embeddings", emb, "--store", store, "--factory",
                       "HNSW16,Flat", "--no-publish")
    v2 = out.strip()
    assert code == 0 and IndexStore(store).current_version() == v1
    code, out, _ = run(capsys, "index", "list", "--store", store, "--json")
    listed = json.loads(out)
    assert [v["version"] for v in listed] == [v1, v2] and [v["current"] for v in listed] == [True, False]
    assert listed[1]["factory"] == "HNSW16,Flat" and listed[1]["recall@10"] >= 0.95

    code, out, _ = run(capsys, "similar", "--store", store, "c1", "-k", "3")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].split()[0] == "1"
    assert "c1" not in [ln.split()[2] for ln in lines]
    code, out, _ = run(capsys, "similar", "--store", store, "c1", "-k", "2", "--json")
    body = json.loads(out)
    assert body["item_id"] == "c1" and body["version"] == v1 and body["mode"] == "visual"
    assert len(body["results"]) == 2
    assert set(body["results"][0]) == {"item_id", "score", "why", "image", "category"}

    assert run(capsys, "index", "publish", v2, "--store", store)[0] == 0
    assert IndexStore(store).current_version() == v2
    code, out, _ = run(capsys, "index", "rollback", "--store", store)
    assert code == 0 and out.strip() == v1 and IndexStore(store).current_version() == v1

    code, out, _ = run(capsys, "index", "eval", "--store", store, "--version", v2, "--queries", "100",
                       "--json")
    report = json.loads(out)
    assert code == 0 and report["version"] == v2 and report["recall@10"] >= 0.9
    assert report["qps_single_thread"] > 0


def test_exit_codes_and_messages(emb, tmp_path, capsys) -> None:
    store = tmp_path / "store"
    assert run(capsys, "index", "build", "--embeddings", emb, "--store", store)[0] == 0
    code, _, err = run(capsys, "similar", "--store", store, "nope")
    assert code == 2 and "'nope' is not in index version" in err
    code, _, err = run(capsys, "similar", "--store", store, "c1", "--mode", "behaviour")
    assert code == 2 and "no behaviour data" in err
    code, _, err = run(capsys, "index", "build", "--embeddings", tmp_path / "missing", "--store", store)
    assert code == 2 and "missing" in err and "embedding_set.json" in err
    code, _, err = run(capsys, "index", "build", "--embeddings", emb, "--store", store,
                       "--memory-budget", "lots")
    assert code == 2 and "--memory-budget" in err
    code, _, err = run(capsys, "index", "publish", "nope", "--store", store)
    assert code == 2 and "no complete index version 'nope'" in err
    # recall target not met: the version is built but not published, exit 1 with the reason
    before = IndexStore(store).current_version()
    code, out, err = run(capsys, "index", "build", "--embeddings", emb, "--store", store,
                         "--factory", "PQ2x4", "--target-recall", "0.99")
    assert code == 1 and "not published" in err and "recall@10" in err and out == ""
    assert IndexStore(store).current_version() == before and len(IndexStore(store).version_ids()) == 2
    code, _, err = run(capsys, "similar", "--store", tmp_path / "empty", "c1")
    assert code == 1 and "nothing published" in err


def test_update_falls_back_to_a_full_build_for_hnsw(emb, tmp_path, capsys, caplog) -> None:
    store = tmp_path / "store"
    code, _, _ = run(capsys, "index", "build", "--embeddings", emb, "--store", store,
                     "--factory", "HNSW16,Flat")
    assert code == 0
    smaller = write_embedding_set(tmp_path / "smaller", [f"c{i}" for i in range(700)],
                                  clustered_vectors(800, 16, latent=6, clusters=20, seed=4)[:700])
    code, out, err = run(capsys, "index", "build", "--embeddings", smaller, "--store", store, "--update")
    assert code == 0 and "HNSW cannot remove" in caplog.text
    meta = IndexStore(store).versions()[-1]
    assert meta["version"] == out.strip() and meta["count"] == 700 and "parent" not in meta


def test_bench_index_writes_its_own_section(tmp_path, capsys) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## API\n\nkept as it is\n")
    argv = ["bench", "index", "--n", "2000", "--dim", "16", "--queries", "50", "--out", out]
    assert run(capsys, *argv)[0] == 0
    assert run(capsys, *argv)[0] == 0  # a second run replaces the section instead of adding one
    text = out.read_text()
    assert text.count("## Index") == 1 and "## API\n\nkept as it is" in text
    section = text.split("## Index", 1)[1]
    for row in ("| numpy brute force", "| ours: Flat", "| hnswlib"):
        assert row in section
    assert "recall@10 1.000 (target 0.95)" in section


def test_build_removes_a_crashed_builds_staging_folder(emb, tmp_path, capsys) -> None:
    import subprocess
    import sys

    from index.store import WRITER_FILE, _writer_tag

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = tmp_path / "store" / "versions" / ".tmp-crashed"
    crashed.mkdir(parents=True)
    (crashed / WRITER_FILE).write_text(_writer_tag(dead.pid))
    code, out, _ = run(capsys, "index", "build", "--embeddings", emb, "--store", tmp_path / "store",
                       "--factory", "Flat")
    assert code == 0
    assert [p.name for p in (tmp_path / "store" / "versions").iterdir()] == [out.strip()]
