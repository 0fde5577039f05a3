"""Shared pieces of the API tests: a small real store (real images, real Lite0 vectors, real
FAISS) and a real `recsys serve` process on loopback."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest

from embeddings.backbone import Backbone
from embeddings.catalog import read_catalog
from embeddings.embedding_set import read_embedding_set
from embeddings.runner import EmbedOptions, embed_catalog
from tests.imagegen import write_images

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

CATEGORIES = ["shoes", "bags", "hats"]
ADMIN_TOKEN = "test-admin-token"


@contextlib.contextmanager
def in_process_client(store: Path, **settings: object) -> Iterator[TestClient]:
    """The app over `store` in this process, its lifespan run (no watcher: reloads are asked for)."""
    from fastapi.testclient import TestClient

    from recsys.api import Settings, create_app

    options = {"admin_token": ADMIN_TOKEN, "reload_interval_s": 0, **settings}
    with TestClient(create_app(Settings(store=store, **options))) as client:
        yield client


def write_catalog(root: Path, count: int) -> Path:
    """Generated product images and a CSV catalogue with category, title, in_stock and price."""
    paths = write_images(root / "images", count)
    rows = [{"item_id": f"item{i:04d}", "image": f"images/{path.name}", "category": CATEGORIES[i % 3],
             "title": f"Product {i}", "in_stock": i % 4 != 0, "price": round(5 + i * 1.25, 2)}
            for i, path in enumerate(paths)]
    catalog = root / "catalog.csv"
    pd.DataFrame(rows).to_csv(catalog, index=False)
    return catalog


def embed(root: Path, backbone: Backbone, count: int = 24) -> Path:
    """A complete embedding set of `count` generated products, made by the real backbone."""
    catalog = read_catalog(write_catalog(root, count))
    out = root / "set"
    embed_catalog(catalog, out, backbone, EmbedOptions(batch_size=8, workers=1, progress=False))
    return out


def publish(embeddings: Path, store: Path) -> str:
    """Build and publish an index version; returns its id."""
    from index.build import build_version

    return str(build_version(embeddings, store, publish=True))


def exact_neighbours(embeddings: Path, item_id: str, k: int) -> list[str]:
    """Brute-force cosine neighbours (the query item left out), to check what the API answers."""
    data = read_embedding_set(embeddings)
    row = list(data.item_ids).index(item_id)
    scores = data.vectors @ data.vectors[row]
    order = [i for i in np.argsort(-scores, kind="stable") if i != row]
    return [str(data.item_ids[i]) for i in order[:k]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(store: Path, log_path: Path, *, reload_interval: float = 0.2,
                   token: str | None = ADMIN_TOKEN) -> Iterator[str]:
    """`recsys serve` in its own process; yields its base URL once /healthz answers."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "RECSYS_ADMIN_TOKEN"}
    if token is not None:
        env["RECSYS_ADMIN_TOKEN"] = token
    command = [sys.executable, "-m", "jobs", "serve", "--store", str(store), "--port", str(port),
               "--reload-interval", str(reload_interval), "--log-level", "warning"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"recsys serve exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"recsys serve did not answer in 60 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate, timeout: float = 300.0, interval: float = 0.05) -> bool:
    """Check `predicate` until it holds: the test moves on the moment the server has done it (a reload
    seen in /readyz), however slow a loaded machine makes that. The timeout is no expectation of how
    long it takes, only a backstop that turns a server that never does it into a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class World:
    """A store with one published version, made from real embeddings of generated products."""

    def __init__(self, root: Path, backbone: Backbone) -> None:
        self.root = root
        self.embeddings = embed(root, backbone)
        self.store = root / "store"
        self.version = publish(self.embeddings, self.store)
        self.items = pd.read_csv(root / "catalog.csv", dtype={"item_id": str})

    def image_path(self, item_id: str) -> Path:
        row = self.items.set_index("item_id").loc[item_id]
        return self.root / row["image"]


@pytest.fixture(scope="session")
def api_world(tmp_path_factory: pytest.TempPathFactory, lite0: Backbone) -> World:
    return World(tmp_path_factory.mktemp("api"), lite0)


@pytest.fixture(scope="session")
def behaviour_store(api_world: World,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, pd.DataFrame]:
    """A copy of the shared store with a behaviour version on top (fitted by the recommender's
    own code): each user clicks around one category only; item0023 is never touched (cold)."""
    from index.store import IndexStore, load_version
    from recsys.behaviour_store import FitOptions, fit_behaviour, write_version
    from recsys.events import load_events

    root = tmp_path_factory.mktemp("api-behaviour")
    store = root / "store"
    shutil.copytree(api_world.store, store)
    rng = random.Random(0)
    rows = []
    for u in range(36):
        pool = [i for i in range(23) if i % 3 == u % 3]
        for t, i in enumerate(rng.sample(pool, 5)):
            rows.append((f"u{u}", f"item{i:04d}", 1_700_000_000 + 3600 * (u * 10 + t), "click"))
    events = root / "events.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"]).to_csv(events, index=False)
    base = IndexStore(store).current_version()
    behaviour = fit_behaviour(load_events(events), load_version(store, base), FitOptions())
    version = write_version(store, base, behaviour, str(events))
    return store, version, pd.read_csv(events)


@pytest.fixture(scope="session")
def api_server(behaviour_store: tuple[Path, str, pd.DataFrame],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `recsys serve` over the behaviour store, for the tests that only read (page, fuzzing)."""
    log = tmp_path_factory.mktemp("api-server") / "serve.log"
    with running_server(behaviour_store[0], log, reload_interval=0) as base:
        yield base
