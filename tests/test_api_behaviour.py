"""Behaviour and hybrid modes and personal recommendations, once a version holds behaviour data
(fitted by the recommender's own `behaviour fit` code on generated events)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recsys.api import Settings, create_app

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]


@pytest.fixture(scope="module")
def client(behaviour_store):
    store, _, _ = behaviour_store
    with TestClient(create_app(Settings(store=store, reload_interval_s=0))) as client:
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
    filtered = client.get("/v1/items/item0004/similar", params={"mode": "hybrid", "k": 3, "category": "hats"})
    assert {r["category"] for r in filtered.json()["results"]} == {"hats"}


def test_cold_item_in_hybrid_mode_gets_visual_neighbours(client) -> None:
    hybrid = client.get("/v1/items/item0023/similar", params={"mode": "hybrid", "k": 5}).json()
    assert len(hybrid["results"]) == 5
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
