"""The optional API token (RECSYS_API_TOKEN): with it set, the routes carrying personal data (a
user's recommendations, session answers, batches) need `Authorization: Bearer <token>`; public
item routes stay open; without it set every route is open as before."""

from __future__ import annotations

import pytest

# The helpers double as a pytest plugin (below); mark them before importing them.
pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import in_process_client  # noqa: E402

pytest_plugins = ["tests.api_support"]

TOKEN = "user-data-token"
GUARDED = [
    ("get", "/v1/users/u1/recommendations", None),
    ("post", "/v1/recommend", {"positive": ["item0004"], "k": 3}),
    ("post", "/v1/similar", {"item_ids": ["item0004"], "k": 3}),
]


@pytest.fixture(scope="module")
def guarded(behaviour_store):
    with in_process_client(behaviour_store[0], api_token=TOKEN) as client:
        yield client


def call(client, method: str, path: str, body: dict | None, headers: dict | None = None):
    if method == "get":
        return client.get(path, headers=headers)
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
def test_guarded_routes_need_the_token(guarded, method, path, body) -> None:
    missing = call(guarded, method, path, body)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "RECSYS_API_TOKEN" in missing.json()["message"]
    assert call(guarded, method, path, body, {"Authorization": f"Basic {TOKEN}"}).status_code == 401
    wrong = call(guarded, method, path, body, {"Authorization": "Bearer not-it"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    ok = call(guarded, method, path, body, {"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"]


def test_the_token_is_checked_before_the_input(guarded) -> None:
    # A bad k without a token tells nothing about the route's parameters: 401, not 422.
    assert guarded.get("/v1/users/u1/recommendations", params={"k": 0}).status_code == 401
    assert guarded.post("/v1/similar", json={"item_ids": []}).status_code == 401


def test_public_routes_stay_open(guarded) -> None:
    assert guarded.get("/v1/items/item0004/similar", params={"k": 3}).status_code == 200
    assert guarded.get("/readyz").status_code == 200
    # The admin route keeps its own token: the API token does not open it.
    assert guarded.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_without_a_token_configured_the_routes_are_open(behaviour_store) -> None:
    with in_process_client(behaviour_store[0]) as client:
        for method, path, body in GUARDED:
            assert call(client, method, path, body).status_code == 200


def test_the_token_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    from recsys.api import Settings

    monkeypatch.setenv("RECSYS_API_TOKEN", TOKEN)
    assert Settings.from_env(tmp_path).api_token == TOKEN
    monkeypatch.setenv("RECSYS_API_TOKEN", "")
    assert Settings.from_env(tmp_path).api_token is None
