"""Behaviour and hybrid modes and personal recommendations, once a version holds behaviour data
(fitted by the recommender's own `behaviour fit` code on generated events)."""

from __future__ import annotations

import pytest

# The helpers double as a pytest plugin (below); mark them before importing them.
pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import World, exact_neighbours, in_process_client  # noqa: E402

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]


def in_stock_neighbours(world: World, item_id: str, k: int) -> list[str]:
    """Exact image neighbours among the items in stock (the rule of behaviour and hybrid answers)."""
    in_stock = set(world.items.loc[world.items["in_stock"], "item_id"])
    return [i for i in exact_neighbours(world.embeddings, item_id, len(world.items)) if i in in_stock][:k]


@pytest.fixture(scope="module")
def client(behaviour_store):
    with in_process_client(behaviour_store[0]) as client:
        yield client


def test_behaviour_mode_follows_what_users_did(client, behaviour_store) -> None:
    _, version, _ = behaviour_store
    ready = client.get("/readyz").json()
    assert ready["version"] == version and ready["behaviour"] is True
    answer = client.get("/v1/items/item0004/similar", params={"mode": "behaviour", "k": 4}).json()
    assert answer["mode"] == "behaviour" and answer["note"] is None
    assert len(answer["results"]) == 4
    # item0004 is a "bags" item (4 % 3 == 1) and only bag-minded users clicked it
    assert {r["category"] for r in answer["results"]} == {"bags"}
    assert all("image" not in r for r in answer["results"])
    hybrid = client.get("/v1/items/item0004/similar", params={"mode": "hybrid", "k": 4}).json()
    assert hybrid["mode"] == "hybrid" and len(hybrid["results"]) == 4
    assert all(r["in_stock"] and r["item_id"] != "item0004" for r in hybrid["results"])
    scores = [r["score"] for r in hybrid["results"]]
    assert scores == sorted(scores, reverse=True)
    filtered = client.get("/v1/items/item0004/similar", params={"mode": "hybrid", "k": 3, "category": "hats"})
    # no user who clicked item0004 clicked a hat: visual neighbours fill the answer, ranked after
    assert [r["category"] for r in filtered.json()["results"]] == ["hats"] * 3


def test_cold_item_in_hybrid_mode_gets_visual_neighbours(client, api_world) -> None:
    # item0023 has no behaviour: its hybrid answer is its nearest items by image, best first,
    # among the items in stock
    hybrid = client.get("/v1/items/item0023/similar", params={"mode": "hybrid", "k": 5}).json()
    assert hybrid["mode"] == "hybrid" and hybrid["note"] is None
    assert [r["item_id"] for r in hybrid["results"]] == in_stock_neighbours(api_world, "item0023", 5)
    scores = [r["score"] for r in hybrid["results"]]
    assert scores == sorted(scores, reverse=True)
    assert client.get("/v1/items/item0023/similar", params={"mode": "behaviour"}).json()["results"] == []


def test_recommendations_for_known_and_unknown_users(client, behaviour_store) -> None:
    known = client.get("/v1/users/u1/recommendations", params={"k": 3})
    assert known.status_code == 200, known.text
    body = known.json()
    assert body["user_id"] == "u1" and body["known_user"] is True
    assert len(body["results"]) == 3 and {r["source"] for r in body["results"]} == {"personal"}
    events = behaviour_store[2]
    clicked = set(events.loc[events.user_id == "u1", "item_id"])
    assert not clicked & {r["item_id"] for r in body["results"]}  # nothing the user already has
    assert all(r["in_stock"] for r in body["results"])  # the recommender's rule, kept by the API
    stranger = client.get("/v1/users/nobody/recommendations", params={"k": 5}).json()
    assert stranger["known_user"] is False and len(stranger["results"]) == 5
    assert {r["source"] for r in stranger["results"]} == {"popular"}
    hats = client.get("/v1/users/nobody/recommendations", params={"k": 2, "category": "hats"}).json()
    assert {r["category"] for r in hats["results"]} == {"hats"}
