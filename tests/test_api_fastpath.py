"""The fast path (recsys/api/fastpath.py) against the FastAPI routes: the same app with the fast
path off is the reference. Every answer and every error must be the same bytes, and the requests
the fast path is for (shop-grade GET similar, POST /v1/recommend) must actually be answered by it."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import in_process_client  # noqa: E402

# Shared session fixtures (api_world, behaviour_store).
pytest_plugins = ["tests.api_support"]

SIMILAR = "/v1/items/{}/similar"
CHEAP = json.dumps({"price": {"lt": 20}})
# Query strings as clients send them (already encoded), each a request the fast path takes.
SHOP_QUERIES = [
    "",  # plain: stored lists, or computed where rules or behaviour models answer
    "k=7&mode=behaviour",
    "k=5&filter=" + json.dumps({"category": "shoes"}).replace(" ", ""),
    "k=4&filter=%7B%22category%22%3A%20%5B%22bags%22%2C%20%22hats%22%5D%7D",  # any-of, percent-encoded
    "filter=" + CHEAP.replace(" ", "+"),  # '+' is a space
    "k=7&mode=visual&filter=%7B%22title%22%3A%7B%22ne%22%3A%22Product%205%22%7D%7D",  # ne
    "k=3&filter=%7B%22price%22%3A%7B%22lt%22%3A11%7D%7D",  # fewer matches than k
    "k=6&group_by=category",
    "k=6&diversity=0.7",
    "k=6&diversity=.25&group_by=in_stock&filter=%7B%22in_stock%22%3Atrue%7D",
    "k=5&exclude=item0002,item0003&category=hats",
    "k=5&filter=&group_by=&exclude=",
    "k=5&filter=%7B%7D",  # no filter
    "k=0010&diversity=1.&utm_source=x",  # a name the route ignores, ignored here too
    "mode=behaviour&k=4&filter=%7B%22price%22%3A%7B%22gt%22%3A20%7D%7D",
    "mode=hybrid&k=8&group_by=category",
]
# Requests the fast path leaves to the route: errors, and spellings the route coerces.
DECLINED = [
    ("k=0&filter=%7B%7D", 422, "query.k"),
    ("k=%2B5&filter=%7B%7D", 200, None),  # "+5": the route's int parsing takes it
    ("k=5&k=6&filter=%7B%7D", 200, None),  # repeated
    ("filter=%7Bnope", 422, "not valid JSON"),
    ("filter=%7B%22colour%22%3A%22red%22%7D", 422, "unknown column 'colour'"),
    ("filter=%7B%22category%22%3A%7B%22gt%22%3A1%7D%7D", 422, "numeric column"),
    ("group_by=colour", 422, "unknown column 'colour'"),
    ("diversity=2", 422, "query.diversity"),
    ("diversity=1e-1", 200, None),
    ("diversity=nan", 422, "query.diversity"),
    ("mode=fast&filter=%7B%7D", 422, "query.mode"),
    ("category=" + "x" * 201, 422, "query.category"),
]


@pytest.fixture(scope="module")
def rules_store(api_world, tmp_path_factory):
    """The shared store with a version carrying business rules (block, boost, bury)."""
    from jobs.cli import main

    root = tmp_path_factory.mktemp("fastpath-rules")
    store = root / "store"
    shutil.copytree(api_world.store, store)
    rules = root / "rules.toml"
    rules.write_text('[[block]]\nitems = ["item0001"]\n\n'
                     '[[boost]]\nname = "hats first"\nfilter = {category = "hats"}\nfactor = 3\n\n'
                     '[[bury]]\nname = "cheap last"\nfilter = {price = {lt = 12}}\n')
    assert main(["rules", "set", "--store", str(store), str(rules)]) == 0
    return store


@pytest.fixture(scope="module", params=["plain", "behaviour", "rules"])
def pair(request, api_world, behaviour_store, rules_store):
    """(fast client, reference client without the fast path) over one store."""
    store = {"plain": api_world.store, "behaviour": behaviour_store[0], "rules": rules_store}[request.param]
    with in_process_client(store) as fast, in_process_client(store, fast_path=False) as reference:
        yield fast, reference


@pytest.fixture
def fast_answers(monkeypatch):
    """How many answers the fast path itself sent (its one way of answering, counted)."""
    from recsys.api import fastpath

    sent = []
    answer = fastpath._answer

    async def counted(scope, send, route, body):
        sent.append(route.path)
        await answer(scope, send, route, body)

    monkeypatch.setattr(fastpath, "_answer", counted)
    return sent


def same(fast, reference) -> None:
    assert fast.status_code == reference.status_code, (fast.text, reference.text)
    assert fast.content == reference.content
    assert fast.headers["content-type"] == reference.headers["content-type"] == "application/json"


@pytest.mark.parametrize("query", SHOP_QUERIES)
def test_shop_grade_get_similar_is_answered_by_the_fast_path_with_the_routes_bytes(pair, fast_answers,
                                                                                   query) -> None:
    fast, reference = pair
    for item_id in ("item0004", "item0010"):
        url = SIMILAR.format(item_id) + "?" + query
        expected = reference.get(url)
        assert expected.status_code == 200 and expected.json()["results"], expected.text
        for _ in range(2):  # computed, then from the answer cache
            same(fast.get(url), expected)
    assert fast_answers == [SIMILAR.format("{item_id}")] * 4
    results = expected.json()["results"]
    assert all("why" in r for r in results)


def test_rules_and_why_come_through_the_fast_path(rules_store, fast_answers) -> None:
    with in_process_client(rules_store) as fast, in_process_client(rules_store, fast_path=False) as reference:
        url = SIMILAR.format("item0004") + "?k=8&filter=" + CHEAP
        answer = fast.get(url)
        same(answer, reference.get(url))
        results = answer.json()["results"]
        assert "item0001" not in [r["item_id"] for r in results]  # blocked
        assert {r["why"].get("rule") for r in results} >= {"hats first", "cheap last"}
        assert fast_answers


@pytest.mark.parametrize(("query", "status", "words"), DECLINED)
def test_what_the_fast_path_declines_gets_the_routes_answer(pair, fast_answers, query, status, words) -> None:
    fast, reference = pair
    url = SIMILAR.format("item0004") + "?" + query
    answer = fast.get(url)
    same(answer, reference.get(url))
    assert answer.status_code == status
    if words:
        assert words in answer.json()["message"]
    assert fast_answers == []
    unknown = SIMILAR.format("nope") + "?filter=%7B%7D"
    same(fast.get(unknown), reference.get(unknown))
    assert fast.get(unknown).status_code == 404


SESSIONS = [
    {"positive": ["item0004", "item0007"], "k": 5},
    {"positive": ["item0004", "zzz"], "negative": ["yyy", "item0005"], "k": 6,
     "filter": {"category": "bags"}},
    {"positive": ["item0002"], "k": 4, "group_by": "category", "diversity": 0.5, "exclude": ["item0003"]},
    {"positive": ["item0000", "item0003", "item0006"], "negative": ["item0001"], "k": 6,
     "mode": "behaviour"},
    {"positive": ["item0000", "item0003"], "mode": "hybrid", "filter": {"price": {"gte": 10}},
     "diversity": 1},
    {"positive": ["item0009"], "mode": "visual", "filter": None, "group_by": None, "k": 3},
]


@pytest.mark.parametrize("body", SESSIONS)
def test_sessions_are_answered_by_the_fast_path_with_the_routes_bytes(pair, fast_answers, body) -> None:
    fast, reference = pair
    expected = reference.post("/v1/recommend", json=body)
    assert expected.status_code == 200 and expected.json()["results"], expected.text
    same(fast.post("/v1/recommend", json=body), expected)
    assert fast_answers == ["/v1/recommend"]
    assert all("because" in r and "why" in r for r in expected.json()["results"])


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"positive": ["zzz"], "negative": ["item0001"]}, 404, "no positive item"),
    ({"positive": []}, 422, "body.positive"),
    ({"positive": ["item0001"], "filter": {"x": 1}}, 422, "unknown column 'x'"),
    ({"positive": ["item0001"], "group_by": "colour"}, 422, "unknown column 'colour'"),
    ({"positive": ["item0001"], "k": 0}, 422, "body.k"),
    ({"positive": ["item0001"], "k": "3"}, 200, None),  # the route's validation coerces it
    ({"positive": ["item0001"], "k": 3.0}, 200, None),
    ({"positive": ["item0001"], "diversity": True}, 200, None),
    ({"positive": ["item0001"], "extra": 1}, 422, "body.extra"),
    ({"positive": "item0001"}, 422, "body.positive"),
    ({"positive": ["item0001"], "exclude": ["x" * 70] * 1000}, 200, None),  # over the fast path's body size
])
def test_sessions_the_fast_path_declines_get_the_routes_answer(pair, fast_answers, body, status,
                                                               words) -> None:
    fast, reference = pair
    answer = fast.post("/v1/recommend", json=body)
    same(answer, reference.post("/v1/recommend", json=body))
    assert answer.status_code == status
    if words:
        assert words in answer.json()["message"]
    assert fast_answers == []


def test_session_bodies_the_fast_path_cannot_read_go_to_the_route(pair, fast_answers) -> None:
    fast, reference = pair
    for content, headers in [
        (b'{"positive": ["item0001"], "k": NaN}', {"content-type": "application/json"}),
        (b'{"positive": ["item0001"]', {"content-type": "application/json"}),
        (b'{"positive": ["item0001"], "k": 2}', {"content-type": "application/json; charset=utf-8"}),
        (b'{"positive": ["item0001"], "k": 2}', {}),
    ]:
        answer = fast.post("/v1/recommend", content=content, headers=headers)
        same(answer, reference.post("/v1/recommend", content=content, headers=headers))
    assert fast_answers == []
    # over the body cap: the cap's 413 comes first, fast path or not
    big = {"positive": ["item0001"], "exclude": ["x" * 1100] * 1000}  # over 1 MiB
    assert fast.post("/v1/recommend", json=big).status_code == 413


def test_fast_answers_are_counted_under_their_route(api_world, fast_answers) -> None:
    with in_process_client(api_world.store) as fast:
        fast.post("/v1/recommend", json={"positive": ["item0002"], "k": 2})
        fast.get(SIMILAR.format("item0002") + "?filter=" + CHEAP)
        text = fast.get("/metrics").text
    assert fast_answers == ["/v1/recommend", SIMILAR.format("{item_id}")]
    assert 'recsys_http_requests_total{method="POST",route="/v1/recommend",status="200"} 1.0' in text
    assert 'recsys_http_requests_total{method="GET",route="/v1/items/{item_id}/similar",status="200"} 1.0' \
        in text
