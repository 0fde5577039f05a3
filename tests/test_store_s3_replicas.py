"""Replicas: two `recsys serve` processes on one store on object storage (a real S3-compatible
server on 127.0.0.1), each with its own cache, swap to a newly published version on their own:
both answer from it within 5 s of the publish (the PUT of CURRENT), with no failed request."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from jobs.cli import main

pytest.register_assert_rewrite("tests.api_support", "tests.s3_support")
from tests.api_support import running_server, wait_for  # noqa: E402
from tests.s3_support import make_set  # noqa: E402

pytest_plugins = ["tests.s3_support"]  # the S3 server (s3_server) and a bucket per test (s3_store)
SWAP_WITHIN_S = 5.0


class Client(threading.Thread):
    """Asks one replica for similar items without pause; records (time, status, version) or errors."""

    def __init__(self, base: str, item_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.base, self.item_ids = base, item_ids
        self.stop = threading.Event()
        self.answers: list[tuple[float, int, str | None]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(self.base)
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(f"/v1/items/{rng.choice(self.item_ids)}/similar", params={"k": 5})
                    version = response.json().get("version") if response.status_code == 200 else None
                    self.answers.append((time.monotonic(), response.status_code, version))
                except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                    self.errors.append(repr(exc))
                self.stop.wait(0.005)

    def first_answer_from(self, version: str) -> float | None:
        return next((t for t, _, v in self.answers if v == version), None)


def publish(embeddings: Path, store: str) -> None:
    assert main(["index", "build", "--embeddings", str(embeddings), "--store", store]) == 0


def test_two_replicas_swap_on_their_own_within_5s(s3_server, s3_store: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    set1, set2 = make_set(tmp_path / "set1"), make_set(tmp_path / "set2", 300, seed=2)
    publish(set1, s3_store)
    first = capsys.readouterr().out.split()[-1]
    with contextlib.ExitStack() as stack:
        bases = []
        for name in ("a", "b"):  # each replica its own machine: its own cache folder
            monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / f"cache-{name}"))
            bases.append(stack.enter_context(running_server(s3_store, tmp_path / f"serve-{name}.log",
                                                            reload_interval=0.5)))
        monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache-builder"))
        clients = [Client(base, [f"item{i:04d}" for i in range(300)]) for base in bases]
        for client in clients:
            client.start()
        try:
            assert wait_for(lambda: all(len(c.answers) > 20 for c in clients))
            published_at: list[float] = []
            with s3_server.on_put(lambda p: p.endswith("/store/CURRENT"),
                                  lambda _: published_at.append(time.monotonic())):
                publish(set2, s3_store)
            second = capsys.readouterr().out.split()[-1]
            assert second != first and len(published_at) == 1
            assert wait_for(lambda: all(c.first_answer_from(second) for c in clients), timeout=15)
            seen = [len(c.answers) for c in clients]
            assert wait_for(lambda: all(len(c.answers) > n + 20 for c, n in zip(clients, seen)))
        finally:
            for client in clients:
                client.stop.set()
                client.join(10)
    delays = [round(c.first_answer_from(second) - published_at[0], 2) for c in clients]
    print(f"replicas answered from the new version {delays} s after the publish; "
          f"{sum(len(c.answers) for c in clients)} requests, none failed")
    for client in clients:
        assert client.errors == []
        assert {status for _, status, _ in client.answers} == {200}
        versions = [v for _, _, v in client.answers]
        assert set(versions) == {first, second}
        switch = versions.index(second)
        assert set(versions[switch:]) == {second}  # once swapped, never back on the old version
        assert client.first_answer_from(second) - published_at[0] < SWAP_WITHIN_S
