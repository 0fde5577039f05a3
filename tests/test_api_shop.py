"""Shop-grade parameters over HTTP (DESIGN.md): filter, group_by, diversity and `why` on GET
similar, POST /v1/similar and user recommendations, against exact answers on the real test store."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import exact_neighbours, in_process_client  # noqa: E402

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]

SIMILAR = "/v1/items/{}/similar"


@pytest.fixture(scope="module")
def client(api_world):
    with in_process_client(api_world.store) as client:
        yield client


@pytest.fixture(scope="module")
def behaviour_client(behaviour_store):
    with in_process_client(behaviour_store[0]) as client:
        yield client


def ids(answer: dict) -> list[str]:
    return [r["item_id"] for r in answer["results"]]


def price(item_id: str) -> float:  # tests/api_support.write_catalog: 5 + 1.25 * i
    return 5 + 1.25 * int(item_id[4:])


def test_get_filter_is_exact_and_never_short(client, api_world) -> None:
    everything = exact_neighbours(api_world.embeddings, "item0010", 23)
    cheap = {"price": {"lt": 10}}  # item0000..item0003 only: fewer than k
    answer = client.get(SIMILAR.format("item0010"), params={"k": 10, "mode": "visual",
                                                            "filter": json.dumps(cheap)}).json()
    assert ids(answer) == [i for i in everything if price(i) < 10]
    shoes_or_hats = {"category": ["shoes", "hats"], "in_stock": True, "title": {"ne": "Product 4"}}
    answer = client.get(SIMILAR.format("item0010"),
                        params={"k": 6, "filter": json.dumps(shoes_or_hats)}).json()
    expect = [i for i in everything if int(i[4:]) % 3 != 1 and int(i[4:]) % 4 != 0 and i != "item0004"][:6]
    assert ids(answer) == expect
    assert all(r["category"] in ("shoes", "hats") and r["in_stock"] for r in answer["results"])
    # an empty filter is no filter: the same bytes as the plain request
    plain = client.get(SIMILAR.format("item0010"), params={"k": 5})
    assert client.get(SIMILAR.format("item0010"), params={"k": 5, "filter": "{}"}).content == plain.content


def test_post_batch_takes_the_same_fields(client, api_world) -> None:
    cheap = {"price": {"gte": 10, "lte": 20}}
    get = client.get(SIMILAR.format("item0003"), params={"k": 4, "filter": json.dumps(cheap)}).json()
    post = client.post("/v1/similar", json={"item_ids": ["item0003", "nope"], "k": 4, "filter": cheap}).json()
    assert post["queries"][0]["results"] == get["results"]
    assert all(10 <= price(i) <= 20 for i in ids(get)) and len(get["results"]) == 4
    assert post["queries"][1]["error"] == "unknown item_id"
    vector = client.post("/v1/similar", json={"vector": [1.0] * 1280, "k": 3, "filter": {"category": "hats"},
                                              "group_by": "in_stock"}).json()
    results = vector["queries"][0]["results"]
    assert {r["category"] for r in results} == {"hats"}
    assert len({r["in_stock"] for r in results}) == len(results)


def test_group_by_and_diversity(client, api_world) -> None:
    everything = exact_neighbours(api_world.embeddings, "item0007", 23)
    answer = client.get(SIMILAR.format("item0007"), params={"k": 5, "group_by": "category"}).json()
    best = {}
    for item in everything:
        best.setdefault(int(item[4:]) % 3, item)
    assert ids(answer) == [i for i in everything if best[int(i[4:]) % 3] == i]  # 3 categories: 3 results
    diverse = client.get(SIMILAR.format("item0007"), params={"k": 5, "diversity": 0.8}).json()
    assert len(diverse["results"]) == 5 and ids(diverse)[0] == everything[0]
    plain = client.get(SIMILAR.format("item0007"), params={"k": 5, "diversity": 0}).json()
    assert ids(plain) == everything[:5]


@pytest.mark.parametrize("params, words", [
    ({"filter": '{"size": 1}'}, "unknown column 'size'"),
    ({"filter": "{nope"}, "not valid JSON"),
    ({"filter": '{"category": {"gt": 1}}'}, "numeric column"),
    ({"group_by": "colour"}, "unknown column 'colour'"),
    ({"diversity": "2"}, "diversity"),
])
def test_bad_shop_parameters_are_422_naming_them(client, params, words) -> None:
    response = client.get(SIMILAR.format("item0001"), params=params)
    assert response.status_code == 422 and words in response.json()["message"], response.text
    post = client.post("/v1/similar", json={"item_ids": ["item0001"], "filter": {"size": {"lt": 3}}})
    assert post.status_code == 422 and "unknown column 'size'" in post.json()["message"]


def test_every_result_says_why(client, behaviour_client) -> None:
    for mode in ("visual", "hybrid"):
        for result in client.get(SIMILAR.format("item0001"), params={"mode": mode}).json()["results"]:
            assert result["why"] == {"sources": {"visual": result["score"]}}
    for mode in ("behaviour", "hybrid"):
        results = behaviour_client.get(SIMILAR.format("item0001"), params={"mode": mode}).json()["results"]
        assert results
        for result in results:
            parts = result["why"]["sources"]
            assert set(parts) <= {"visual", "behaviour"}
            assert sum(parts.values()) == pytest.approx(result["score"], abs=2e-6)
    for result in behaviour_client.get("/v1/users/u1/recommendations").json()["results"]:
        assert sum(result["why"]["sources"].values()) == pytest.approx(result["score"], abs=2e-6)


def test_recommendations_and_behaviour_modes_take_the_filter(behaviour_client) -> None:
    full = behaviour_client.get("/v1/users/u2/recommendations", params={"k": 24}).json()
    got = behaviour_client.get("/v1/users/u2/recommendations",
                               params={"k": 3, "filter": '{"category": "shoes"}'}).json()
    assert ids(got) == [r["item_id"] for r in full["results"] if r["category"] == "shoes"][:3]
    for mode in ("behaviour", "hybrid"):
        full = behaviour_client.get(SIMILAR.format("item0002"), params={"k": 23, "mode": mode}).json()
        got = behaviour_client.get(SIMILAR.format("item0002"),
                                   params={"k": 4, "mode": mode, "filter": '{"price": {"gt": 20}}'}).json()
        assert ids(got) == [i for i in ids(full) if price(i) > 20][:4]
    bad = behaviour_client.get("/v1/users/u2/recommendations", params={"filter": '{"x": 1}'})
    assert bad.status_code == 422 and "unknown column 'x'" in bad.json()["message"]


def test_session_recommendations(client, behaviour_client, api_world) -> None:
    body = client.post("/v1/recommend", json={"positive": ["item0004", "zzz"], "negative": ["yyy"], "k": 5,
                                              "filter": {"category": "bags"}}).json()
    assert body["mode"] == "visual" and body["requested_mode"] == "hybrid" and body["note"]
    assert body["unknown"] == ["zzz", "yyy"]
    near = [i for i in exact_neighbours(api_world.embeddings, "item0004", 23) if int(i[4:]) % 3 == 1]
    assert ids(body) == near[:5]
    assert all(r["because"] == ["item0004"] and r["why"] == {"sources": {"visual": r["score"]}}
               for r in body["results"])
    missing = client.post("/v1/recommend", json={"positive": ["zzz"], "negative": ["item0001"]})
    assert missing.status_code == 404 and missing.json()["unknown"] == ["zzz"]
    assert client.post("/v1/recommend", json={"positive": []}).status_code == 422
    bad = client.post("/v1/recommend", json={"positive": ["item0001"], "filter": {"x": 1}})
    assert bad.status_code == 422
    for mode in ("behaviour", "hybrid"):
        positive = ["item0000", "item0003", "item0006"]
        body = behaviour_client.post("/v1/recommend", json={"positive": positive, "negative": ["item0001"],
                                                            "k": 6, "mode": mode}).json()
        assert body["mode"] == mode and body["unknown"] == []
        assert len(body["results"]) == 6 and not set(positive + ["item0001"]) & set(ids(body))
        assert all(set(r["because"]) <= set(positive) for r in body["results"])


def test_rules_reach_a_running_server_by_hot_reload(api_world, tmp_path) -> None:
    import shutil

    import httpx

    from jobs.cli import main
    from tests.api_support import running_server, wait_for

    store = tmp_path / "store"
    shutil.copytree(api_world.store, store)
    nearest = exact_neighbours(api_world.embeddings, "item0005", 23)
    with running_server(store, tmp_path / "serve.log") as base:
        before = httpx.get(base + SIMILAR.format("item0005"), params={"k": 3}).json()
        assert ids(before) == nearest[:3]
        rules = tmp_path / "rules.toml"
        rules.write_text(f'[[block]]\nitems = ["{nearest[0]}"]\n\n'
                         '[[boost]]\nname = "hats first"\nfilter = {category = "hats"}\nfactor = 10\n')
        assert main(["rules", "set", "--store", str(store), str(rules)]) == 0
        assert wait_for(lambda: httpx.get(base + "/readyz").json()["version"] != before["version"])
        after = httpx.get(base + SIMILAR.format("item0005"), params={"k": 3}).json()
        hats = [i for i in nearest if int(i[4:]) % 3 == 2 and i != nearest[0]]
        assert ids(after) == hats[:3]
        assert all(r["why"]["rule"] == "hats first" for r in after["results"])
