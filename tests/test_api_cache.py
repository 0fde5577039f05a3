"""The answer cache: bounded in bytes, large answers left out, one entry for all unknown users."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recsys.api import Settings
from recsys.api.cache import ENTRY_OVERHEAD, AnswerCache

pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import in_process_client  # noqa: E402

pytest_plugins = ["tests.api_support"]

MIB = 1 << 20


def test_the_cache_is_bounded_in_bytes_and_keeps_recent_answers() -> None:
    cache = AnswerCache(max_bytes=20_000)
    answer = b"x" * 1000
    cache.put(("similar", "first"), answer, k=10)
    for i in range(200):
        cache.put(("similar", f"item{i}"), answer, k=10)
        assert cache.get(("similar", "first")) == answer  # used, so never the oldest
        assert cache.nbytes <= 20_000
    assert 10 <= len(cache) <= 20_000 // (1000 + ENTRY_OVERHEAD)
    assert cache.get(("similar", "item0")) is None and cache.get(("similar", "item199")) == answer
    # replacing an entry does not count it twice
    before = cache.nbytes
    cache.put(("similar", "item199"), answer, k=10)
    assert cache.nbytes == before
    # an answer bigger than the whole cache is not kept (and does not empty it)
    cache.put(("similar", "huge"), b"y" * 30_000, k=10)
    assert cache.get(("similar", "huge")) is None and len(cache) > 10


def test_answers_for_many_items_are_not_kept() -> None:
    cache = AnswerCache(max_bytes=MIB, max_k=100)
    cache.put("k100", b"[]", k=100)
    cache.put("k101", b"[]", k=101)
    assert cache.get("k100") == b"[]" and cache.get("k101") is None


def test_the_default_bound_is_256_mib() -> None:
    settings = Settings(store="unused")
    assert settings.cache_max_bytes == 256 * MIB and settings.cache_max_k == 100


@pytest.fixture(scope="module")
def client(behaviour_store):
    with in_process_client(behaviour_store[0], cache_max_bytes=64_000) as client:
        yield client


def cache_of(client: TestClient) -> AnswerCache:
    return client.app.state.serving.snapshot.cache


def test_unknown_users_share_one_answer(client) -> None:
    cache = cache_of(client)
    first = client.get("/v1/users/stranger-0/recommendations", params={"k": 5}).json()
    entries = len(cache)
    for i in range(1, 50):
        body = client.get(f"/v1/users/stranger-{i}/recommendations", params={"k": 5}).json()
        assert body["user_id"] == f"stranger-{i}" and body["known_user"] is False
        assert body["results"] == first["results"] and body["version"] == first["version"]
    assert len(cache) == entries
    # a known user has an answer of its own, not the shared one
    known = client.get("/v1/users/u1/recommendations", params={"k": 5}).json()
    assert known["user_id"] == "u1" and known["known_user"] is True
    assert {r["source"] for r in known["results"]} == {"personal"}
    assert len(cache) == entries + 1
    # the same user's answer comes back from the cache byte for byte
    again = client.get("/v1/users/u1/recommendations", params={"k": 5})
    assert again.json() == known and list(again.json()) == ["user_id", "version", "known_user", "results"]


def test_large_k_answers_are_not_cached_and_the_server_cache_stays_in_its_bytes(client) -> None:
    cache = cache_of(client)
    entries = len(cache)
    for user in ("u2", "u3", "nobody"):
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 200}).json()
        assert body["user_id"] == user and body["results"]
    assert len(cache) == entries
    for i in range(36):
        for k in (3, 7, 11):
            assert client.get(f"/v1/users/u{i}/recommendations", params={"k": k}).status_code == 200
    assert 0 < cache.nbytes <= 64_000
    assert len(cache) < 36 * 3  # the byte bound let older answers go



def test_a_flood_of_unknown_users_leaves_the_server_memory_where_it_was(behaviour_store) -> None:
    """500 distinct unknown users, each at k=5 (one shared cache entry) and k=200 (not kept), through
    the app with its default cache (256 MiB): what it holds afterwards (tracemalloc: every Python
    allocation still alive) grows by less than 256 KiB. An answer kept per user (about 1 KiB at k=5)
    would hold twice that; at 15,000 users and k=200 it grew a server by 292 MB."""
    import gc
    import tracemalloc

    def flood(client: TestClient, users: range) -> None:
        for n in users:
            for k in (5, 200):
                answer = client.get(f"/v1/users/flood-{n}/recommendations", params={"k": k})
                assert answer.status_code == 200 and answer.json()["known_user"] is False

    with in_process_client(behaviour_store[0]) as client:
        cache = cache_of(client)
        flood(client, range(20))  # first answers, thread pools, lazily built state
        assert len(cache) == 1  # the k=5 answer all unknown users share
        nbytes = cache.nbytes
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            flood(client, range(20, 520))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert (len(cache), cache.nbytes) == (1, nbytes)
        assert grown < 256 * 1024, f"{grown} bytes still held after 500 unknown users"
