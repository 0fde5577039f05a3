"""The index store on object storage, against a real S3-compatible server on 127.0.0.1 (moto):
build, publish, list, rollback, read and verify through the command line; a real `recsys serve`
that caches the served version, reloads by itself and rolls back; and an upload killed half-way
that leaves CURRENT serving the old version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import httpx
import pytest

from index.remote import RemoteStore, cache_dir_for, parse_location
from index.store import IndexStore
from jobs.cli import main

pytest.register_assert_rewrite("tests.api_support", "tests.s3_support")
from tests.api_support import running_server, wait_for  # noqa: E402
from tests.s3_support import make_set, remote_text  # noqa: E402

pytest_plugins = ["tests.s3_support"]  # the S3 server (s3_server) and a bucket per test (s3_store)


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """`recsys ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def build(capsys: pytest.CaptureFixture[str], embeddings: Path, store: str, *extra: str) -> str:
    code, out, err = cli(capsys, "index", "build", "--embeddings", embeddings, "--store", store, *extra)
    assert code == 0, err
    return out.splitlines()[-1]


def objects(url: str, version: str) -> set[str]:
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    prefix = f"{root}/versions/{version}/"
    return {path[len(prefix):] for path in fs.find(prefix)}


def test_locations() -> None:
    assert parse_location("store") == Path("store")
    assert parse_location("/data/store") == Path("/data/store")
    assert parse_location("file:///data/store") == Path("/data/store")
    assert parse_location("s3://bucket/prefix") == "s3://bucket/prefix"
    with pytest.raises(ValueError, match="no bucket"):
        parse_location("s3:///prefix")
    with pytest.raises(ValueError, match="unknown URL scheme 'nosuch'"):
        parse_location("nosuch://bucket/prefix")


def test_build_publish_rollback_and_verified_reads(s3_store: str, tmp_path: Path, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    set1, set2 = make_set(tmp_path / "set1"), make_set(tmp_path / "set2", 320, seed=2)
    v1 = build(capsys, set1, s3_store)
    assert not (tmp_path / "s3:").exists()  # the old bug: a local folder named after the URL
    assert remote_text(s3_store, "CURRENT") == v1 + "\n"
    meta = json.loads(remote_text(s3_store, f"versions/{v1}/meta.json"))
    assert objects(s3_store, v1) == set(meta["checksums"]) | {"meta.json"}
    assert {"index.faiss", "items.parquet", "vectors.npy"} <= set(meta["checksums"])

    v2 = build(capsys, set2, s3_store)
    assert remote_text(s3_store, "CURRENT") == v2 + "\n"
    assert remote_text(s3_store, "HISTORY").split() == [v1, v2]
    code, out, _ = cli(capsys, "index", "list", "--store", s3_store, "--json")
    assert code == 0 and [(v["version"], v["current"], v["count"]) for v in json.loads(out)] == [
        (v1, False, 300), (v2, True, 320)]
    code, out, _ = cli(capsys, "similar", "--store", s3_store, "item0310", "-k", "3", "--json")
    assert code == 0 and json.loads(out)["version"] == v2 and len(json.loads(out)["results"]) == 3

    assert cli(capsys, "index", "rollback", "--store", s3_store)[:2] == (0, v1)
    assert remote_text(s3_store, "CURRENT") == v1 + "\n"
    code, out, _ = cli(capsys, "similar", "--store", s3_store, "item0001", "--json")
    assert code == 0 and json.loads(out)["version"] == v1
    assert cli(capsys, "index", "publish", v2, "--store", s3_store)[:2] == (0, v2)
    assert remote_text(s3_store, "CURRENT") == v2 + "\n"

    # A derived version (rules over the serving one): unchanged files copied on the server side.
    rules = tmp_path / "rules.toml"
    rules.write_text('[[block]]\nitems = ["item0002"]\n')
    code, out, err = cli(capsys, "rules", "set", rules, "--store", s3_store)
    assert code == 0, err
    v_rules = out.split(":")[0]
    assert remote_text(s3_store, "CURRENT") == v_rules + "\n"
    assert objects(s3_store, v_rules) == objects(s3_store, v2) | {"rules.toml"}
    code, out, _ = cli(capsys, "rules", "show", "--store", s3_store)
    assert code == 0 and 'items = ["item0002"]' in out

    v3 = build(capsys, set1, s3_store, "--no-publish")
    assert objects(s3_store, v3) and remote_text(s3_store, "CURRENT") == v_rules + "\n"

    # Another machine (a fresh cache) verifies what it downloads: a corrupt object fails the read
    # and the publish, CURRENT stays, and nothing of the version lands in that cache.
    fs, root = fsspec.core.url_to_fs(s3_store)
    fs.pipe_file(f"{root}/versions/{v3}/vectors.npy", b"not the vectors")
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "other-cache"))
    code, _, err = cli(capsys, "similar", "--store", s3_store, "item0001", "--version", v3)
    assert code == 1 and f"versions/{v3}/vectors.npy: checksum mismatch" in err
    code, _, err = cli(capsys, "index", "publish", v3, "--store", s3_store)
    assert code == 1 and "checksum mismatch" in err
    assert remote_text(s3_store, "CURRENT") == v_rules + "\n"
    cached = RemoteStore(s3_store).cache.root / "versions"
    assert list(cached.iterdir()) == []

    # Retention on the remote: --keep 2 deletes the oldest, never CURRENT nor the rollback target.
    v4 = build(capsys, set2, s3_store, "--keep", "2")
    remote = RemoteStore(s3_store)
    assert remote.current_version() == v4
    assert remote.version_ids() == [v_rules, v3, v4]
    assert objects(s3_store, v1) == set() and objects(s3_store, v2) == set()


def test_serve_hot_reload_rollback_and_an_upload_killed_half_way(s3_server, s3_store: str, tmp_path: Path,
                                                                 capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.imagegen import write_images

    bucket = s3_store.split("/")[2]
    set1 = make_set(tmp_path / "set1", images=f"s3://{bucket}/images")  # catalogue images on S3
    set2 = make_set(tmp_path / "set2", 320, seed=2)
    image = write_images(tmp_path / "images", 2)[1]  # item0001.jpg
    fsspec.filesystem("s3").put_file(str(image), f"{bucket}/images/item0001.jpg")
    v1 = build(capsys, set1, s3_store)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "server-cache"))  # the server's own disk
    cache = IndexStore(cache_dir_for(s3_store))
    with running_server(s3_store, tmp_path / "serve.log", reload_interval=0.2) as base:
        monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))

        def serving() -> str | None:
            return httpx.get(base + "/readyz").json()["version"]

        assert serving() == v1
        answer = httpx.get(base + "/v1/items/item0001/similar", params={"k": 5}).json()
        assert answer["version"] == v1 and len(answer["results"]) == 5
        # An image on S3: a presigned link for the browser, which fetches the object itself.
        redirect = httpx.get(base + "/v1/items/item0001/image")
        assert redirect.status_code == 307 and "Signature=" in redirect.headers["location"]
        assert httpx.get(redirect.headers["location"]).content == image.read_bytes()
        assert cache.version_ids() == [v1]  # downloaded and verified into the server's cache

        v2 = build(capsys, set2, s3_store)  # hot reload: the server sees CURRENT move
        assert wait_for(lambda: serving() == v2, timeout=10)
        assert httpx.get(base + "/v1/items/item0310/similar").json()["version"] == v2
        assert cli(capsys, "index", "rollback", "--store", s3_store)[:2] == (0, v1)
        assert wait_for(lambda: serving() == v1, timeout=10)
        assert cli(capsys, "index", "publish", v2, "--store", s3_store)[:2] == (0, v2)
        assert wait_for(lambda: serving() == v2, timeout=10)

        # A build in its own process, killed -9 the moment the first object of its version is stored.
        env = {**os.environ, "RECSYS_CACHE_DIR": str(tmp_path / "builder-cache")}
        builder = subprocess.Popen([sys.executable, "-m", "jobs", "index", "build", "--embeddings", str(set1),
                                    "--store", s3_store], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        killed: list[str] = []

        def kill(path: str) -> None:
            killed.append(path)
            os.kill(builder.pid, signal.SIGKILL)

        with s3_server.on_put(lambda p: "/store/versions/" in p and not p.endswith("/meta.json"), kill):
            assert builder.wait(timeout=60) == -signal.SIGKILL
        assert len(killed) == 1
        partial = killed[0].split("/versions/")[1].split("/")[0]
        assert objects(s3_store, partial)  # what was stored of it ...
        remote = RemoteStore(s3_store)
        assert partial not in remote.version_ids()  # ... is no version: no meta.json
        assert remote.current_version() == v2
        time.sleep(1.0)  # five polls
        ready = httpx.get(base + "/readyz").json()
        assert ready["version"] == v2 and ready["last_reload_failure"] is None
        assert httpx.get(base + "/v1/items/item0001/similar").status_code == 200
        code, out, _ = cli(capsys, "index", "list", "--store", s3_store, "--json")
        assert partial not in out

        # The dead upload is tidied (by age; here at once), and the next build publishes.
        assert remote.clean_stale_uploads(max_age=0) == [partial]
        assert objects(s3_store, partial) == set()
        v3 = build(capsys, set1, s3_store)
        assert wait_for(lambda: serving() == v3, timeout=10)
        # The server's cache keeps the served version and the one before, not every version.
        assert set(cache.version_ids()) == {v2, v3}


def test_catalogue_images_on_object_storage(s3_store: str, tmp_path: Path) -> None:
    """Image references may be s3:// URLs: the catalogue keeps them, the loader reads them through
    the same environment (in parallel, as it does HTTP images), a missing one fails that item only."""
    import numpy as np

    from embeddings.catalog import read_catalog
    from embeddings.loader import CatalogImages
    from tests.imagegen import write_images

    bucket = s3_store.split("/")[2]
    fs = fsspec.filesystem("s3")
    refs = []
    for path in write_images(tmp_path / "images", 2):
        fs.put_file(str(path), f"{bucket}/images/{path.name}")
        refs.append(f"s3://{bucket}/images/{path.name}")
    refs.append(f"s3://{bucket}/images/missing.jpg")
    rows = "".join(f"i{n},{ref}\n" for n, ref in enumerate(refs))
    (tmp_path / "catalog.csv").write_text("item_id,image\n" + rows)
    catalog = read_catalog(tmp_path / "catalog.csv")
    assert list(catalog["image"]) == refs
    loaded = CatalogImages(refs, ["i0", "i1", "i2"], np.asarray).__getitems__([0, 1, 2])
    assert [item["status"] for item in loaded] == ["ok", "ok", "failed"]
    assert loaded[0]["pixels"].ndim == 3 and loaded[0]["sha"] != loaded[1]["sha"]
    assert loaded[2]["error"] == ("not_found", f"{refs[2]}: no such object")


def test_nightly_config_keeps_a_store_url(tmp_path: Path) -> None:
    from jobs.nightly.config import config_from_dict

    raw = {"work_dir": "work", "store": "s3://bucket/store", "catalog": {"file": "catalog.csv"}}
    config = config_from_dict(raw, base=tmp_path)
    assert config.store == "s3://bucket/store" and config.work_dir == tmp_path / "work"
    assert config_from_dict({**raw, "store": "store"}, base=tmp_path).store == tmp_path / "store"


def test_a_write_that_fails_uploads_nothing(s3_store: str, tmp_path: Path) -> None:
    from index.build import build_version
    from index.remote import synced_store

    embeddings = make_set(tmp_path / "set")
    with pytest.raises(RuntimeError, match="gate"), synced_store(s3_store) as root:
        local = build_version(embeddings, root)  # built and published in the local mirror ...
        assert IndexStore(root).current_version() == local
        raise RuntimeError("a gate failed after the build")
    remote = RemoteStore(s3_store)  # ... and nothing of it on the remote
    assert remote.version_ids() == [] and remote.current_version() is None
    assert objects(s3_store, local) == set()


def test_a_missing_bucket_or_an_empty_store_says_so(s3_store: str, capsys) -> None:
    bucket = s3_store.split("/")[2]
    code, _, err = cli(capsys, "index", "list", "--store", f"s3://{bucket}-nosuch/store")
    assert code == 2 and f"no bucket '{bucket}-nosuch'" in err
    code, _, err = cli(capsys, "similar", "--store", s3_store, "item0001")
    assert code == 1 and f"{s3_store}: no CURRENT; nothing published yet" in err
    code, _, err = cli(capsys, "index", "rollback", "--store", s3_store)
    assert code == 2 and "no earlier published version" in err
