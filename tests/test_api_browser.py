"""The /ui page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright),
against a real `recsys serve` process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"]


def chromium_path() -> str:
    """Debian's Chromium; in CI its absence is a failure, elsewhere a skip with the reason."""
    path = os.environ.get("RECSYS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        message = "Chromium is not installed (install.sh installs it: apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_page_looks_up_an_item_and_switches_modes(browser, behaviour_store, api_server) -> None:
    base = api_server
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(base + "/ui")

    # Samples from the index, each with its picture.
    page.wait_for_function("document.querySelectorAll('#samples .card').length === 12")
    assert f"version {behaviour_store[1]}" in page.inner_text("#version")

    # Clicking a sample looks it up: its own card, then its neighbours with scores and images.
    page.click('#samples .card[data-item-id="item0004"]')
    page.wait_for_function("document.querySelectorAll('#results .card').length === 10")
    expected = httpx.get(base + "/v1/items/item0004/similar", params={"k": 10, "mode": "visual"}).json()
    shown = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)")
    assert shown == [r["item_id"] for r in expected["results"]]
    first_score = page.inner_text("#results .card .score")
    assert first_score == f"score {expected['results'][0]['score']:.3f}"
    assert page.get_attribute("#query .card", "data-item-id") == "item0004"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#query img, #results img'))"
        ".every(img => img.complete && img.naturalWidth > 0)")
    natural = page.eval_on_selector("#query img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [160, 160]  # the catalogue's own picture, served by /v1/items/{id}/image

    # Switching the mode asks again and shows what the behaviour model answers.
    page.check('input[name="mode"][value="behaviour"]')
    page.wait_for_function("document.querySelector('#status').textContent.includes('(behaviour)')")
    assert "mode=behaviour" in page.url
    answer = httpx.get(base + "/v1/items/item0004/similar", params={"k": 10, "mode": "behaviour"}).json()
    behaviour_ids = [r["item_id"] for r in answer["results"]]
    page.wait_for_function(f"document.querySelectorAll('#results .card').length === {len(behaviour_ids)}")
    assert page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)") \
        == behaviour_ids != shown

    # A neighbour's card is a link to its own neighbours.
    second = behaviour_ids[0]
    page.click(f'#results .card[data-item-id="{second}"]')
    page.wait_for_function(
        f"document.querySelector('#query .card')?.dataset.itemId === '{second}'")
    assert page.input_value("#item-id") == second

    # An unknown id shows the API's message as an error.
    page.fill("#item-id", "no-such-item")
    page.click("#search")
    page.wait_for_function("document.querySelector('#status').className === 'error'")
    assert "unknown item_id 'no-such-item'" in page.inner_text("#status")
    assert page.eval_on_selector_all("#results .card", "cards => cards.length") == 0
    assert problems == []
    page.close()


def test_page_filters_explains_and_builds_sessions(browser, api_server) -> None:
    import json

    base = api_server
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(base + "/ui?item=item0004&mode=hybrid")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 10")

    def shown() -> list[str]:
        return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)")

    # Each result shows its reasons: each source's part of the score.
    answer = httpx.get(base + "/v1/items/item0004/similar", params={"mode": "hybrid"}).json()
    first = answer["results"][0]
    expected = " · ".join(f"{name} {part:.3f}" for name, part in first["why"]["sources"].items())
    assert page.inner_text("#results .card .why") == expected
    assert "why" not in page.inner_text("#results .card .meta")

    # Filter and group_by: the page asks the API with them and shows what it answers.
    bags = httpx.get(base + "/v1/items/item0004/similar",
                     params={"mode": "hybrid", "filter": json.dumps({"category": "bags"})}).json()
    assert 0 < len(bags["results"]) < 10
    page.fill("#filter", '{"category": "bags"}')
    page.click("#apply")
    count = len(bags["results"])
    page.wait_for_function(f"document.querySelector('#status').textContent.startsWith('{count} ')")
    assert shown() == [r["item_id"] for r in bags["results"]]
    assert all("category: bags" in text for text in page.eval_on_selector_all(
        "#results .card .meta", "nodes => nodes.map(n => n.textContent)"))
    page.fill("#filter", "")
    page.fill("#group-by", "category")
    page.click("#apply")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 3")
    grouped = httpx.get(base + "/v1/items/item0004/similar",
                        params={"mode": "hybrid", "group_by": "category"})
    assert shown() == [r["item_id"] for r in grouped.json()["results"]]
    page.fill("#group-by", "")
    page.fill("#filter", "{oops")
    page.click("#apply")
    page.wait_for_function("document.querySelector('#status').className === 'error'")
    assert "filter: not valid JSON" in page.inner_text("#status")
    page.fill("#filter", "")
    page.click("#apply")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 10")

    # A session: + on two results, - on one, then the session's recommendations with their reasons.
    liked = shown()[:2]
    disliked = shown()[2]
    for item in liked:
        page.click(f'#results .card[data-item-id="{item}"] .add-positive')
    page.click(f'#results .card[data-item-id="{disliked}"] .add-negative')
    assert page.inner_text("#positives") == ", ".join(liked) and page.inner_text("#negatives") == disliked
    page.click("#session-go")
    page.wait_for_function("document.querySelector('#status').textContent.includes('for the session')")
    session = httpx.post(base + "/v1/recommend", json={"positive": liked, "negative": [disliked], "k": 10,
                                                       "mode": "hybrid"}).json()
    assert shown() == [r["item_id"] for r in session["results"]]
    assert not set(liked) & set(shown())
    because = session["results"][0]["because"]
    if because:
        assert "because " + ", ".join(because) in page.inner_text("#results .card .why")

    # Modes side by side: one column per mode, each what the API answers in that mode.
    page.check("#compare")
    page.fill("#item-id", "item0007")
    page.click("#search")
    page.wait_for_function("document.querySelector('#columns').dataset.itemId === 'item0007'")
    for mode in ("visual", "behaviour", "hybrid"):
        column = page.eval_on_selector_all(f'#columns .column[data-mode="{mode}"] .card',
                                           "cards => cards.map(c => c.dataset.itemId)")
        expected = httpx.get(base + "/v1/items/item0007/similar", params={"k": 10, "mode": mode}).json()
        assert column == [r["item_id"] for r in expected["results"]]
    page.uncheck("#compare")
    page.wait_for_function("document.querySelectorAll('#columns .column').length === 0")

    # A user's recommendations.
    page.fill("#user-id", "u1")
    page.click("#user-go")
    page.wait_for_function("document.querySelector('#status').textContent.includes('items for u1')")
    user = httpx.get(base + "/v1/users/u1/recommendations", params={"k": 10}).json()
    assert shown() == [r["item_id"] for r in user["results"]]
    assert problems == []
    page.close()


def test_page_links_the_serving_versions_health_report(browser, api_server, tmp_path, monkeypatch) -> None:
    """With a reports folder (RECSYS_REPORTS_DIR) the header links the serving version's health
    report with its counts, and the link opens the report with its plots; without one, no link."""
    from tests.api_support import running_server
    from tests.test_api_health_report import build_health_world

    page = browser.new_page()
    with page.expect_response("**/v1/health/summary") as answer:
        page.goto(api_server + "/ui")
    assert answer.value.status == 404
    assert page.is_hidden("#health-report")
    page.close()

    world = build_health_world(tmp_path)
    monkeypatch.setenv("RECSYS_REPORTS_DIR", str(world.reports))
    with running_server(world.store, tmp_path / "serve.log", reload_interval=0) as base:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(base + "/ui")
        page.wait_for_selector("#health-report", state="visible")
        summary = httpx.get(base + "/v1/health/summary").json()
        link = page.inner_text("#health-report")
        assert link.startswith("catalogue health: ")
        assert f"{summary['duplicate_groups']} duplicate groups" in link and "1 placeholder" in link
        assert "3 failed images" in link
        assert page.get_attribute("#health-report", "href") == "/v1/health/report"
        with page.context.expect_page() as opened:
            page.click("#health-report")
        report = opened.value
        report.wait_for_load_state()
        assert report.url == base + "/v1/health/report"
        assert report.title() == f"Catalogue health {world.serving}"
        assert f"Drift against {world.old}" in report.inner_text("body")
        plot = report.locator('img[alt="Vector distribution: old vs new"]')
        assert plot.evaluate("img => img.complete && img.naturalWidth > 600")
        assert problems == []
        page.close()
        report.close()
