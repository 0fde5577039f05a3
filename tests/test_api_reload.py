"""Hot reload on a real `recsys serve` process: under load no request fails, and a version that
cannot load leaves the old one serving, visible in /readyz and /metrics."""

from __future__ import annotations

import random
import shutil
import threading

import httpx
import pytest

from index.store import IndexStore

# The helpers double as a pytest plugin (below); mark them before importing them.
pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import ADMIN_TOKEN, publish, running_server, wait_for  # noqa: E402

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]


class Hammer(threading.Thread):
    """Asks for similar items of random items without pause until stopped."""

    def __init__(self, base: str, item_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.base, self.item_ids = base, item_ids
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.versions: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(0)
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                item = rng.choice(self.item_ids)
                try:
                    response = client.get(f"/v1/items/{item}/similar", params={"k": rng.choice([3, 5, 10])})
                    self.statuses.append(response.status_code)
                    self.versions.append(response.json()["version"])
                except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                    self.errors.append(repr(exc))
                self.stop.wait(0.002)  # steady load, leaving the cores to the server and the build


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_reload_under_load_then_a_broken_version(api_world, tmp_path) -> None:
    store = tmp_path / "store"
    shutil.copytree(api_world.store, store)
    first = api_world.version
    with running_server(store, tmp_path / "serve.log", reload_interval=0.2) as base:
        hammer = Hammer(base, api_world.items["item_id"].tolist())
        hammer.start()
        try:
            assert wait_for(lambda: len(hammer.statuses) > 20)
            second = publish(api_world.embeddings, store)  # the nightly job, underneath the server
            assert wait_for(lambda: httpx.get(base + "/readyz").json()["version"] == second)
            seen = len(hammer.statuses)
            assert wait_for(lambda: len(hammer.statuses) > seen + 20)
        finally:
            hammer.stop.set()
            hammer.join(10)
        assert hammer.errors == []
        assert set(hammer.statuses) == {200}
        assert {first, second} == set(hammer.versions)
        # versions only move forward: no request answered from the old index after the new one
        switch = hammer.versions.index(second)
        assert set(hammer.versions[switch:]) == {second}

        # A published version whose index file is corrupt: the old one keeps serving.
        broken = "20990101T000000Z-broken"
        shutil.copytree(store / "versions" / second, store / "versions" / broken)
        (store / "versions" / broken / "index.faiss").write_bytes(b"not a faiss index")
        (store / "CURRENT").write_text(broken + "\n")

        def failure_shown() -> bool:
            failure = httpx.get(base + "/readyz").json().get("last_reload_failure") or {}
            return failure.get("version") == broken

        assert wait_for(failure_shown)
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["version"] == second
        assert "index.faiss" in ready.json()["last_reload_failure"]["message"]
        answer = httpx.get(base + "/v1/items/item0001/similar").json()
        assert answer["version"] == second and len(answer["results"]) == 10
        text = httpx.get(base + "/metrics").text
        assert metric(text, 'recsys_reloads_total{result="failure"}') == 1.0
        assert metric(text, 'recsys_reloads_total{result="success"}') == 2.0
        assert metric(text, "recsys_reload_failing") == 1.0
        assert f'recsys_index_version_info{{version="{second}"}} 1.0' in text

        # Asked by hand, the broken version fails again and says what still serves.
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        refused = httpx.post(base + "/v1/admin/reload", headers=admin)
        assert refused.status_code == 409
        assert refused.json()["error"] == "reload_failed" and refused.json()["serving"] == second

        # The next good version clears the failure.
        third = publish(api_world.embeddings, store)
        assert IndexStore(store).current_version() == third
        assert wait_for(lambda: httpx.get(base + "/readyz").json()["version"] == third)
        assert httpx.get(base + "/readyz").json()["last_reload_failure"] is None
        assert metric(httpx.get(base + "/metrics").text, "recsys_reload_failing") == 0.0

        # POST /v1/admin/reload of a named earlier version (a manual rollback of what is served).
        rolled = httpx.post(base + "/v1/admin/reload", params={"version": first}, headers=admin)
        assert rolled.status_code == 200, rolled.text
        assert rolled.json() == {"reloaded": True, "version": first, "previous": third}
